//! `sluice`: one binary for every role and every client verb.
//!
//! Errors end the process with one line on stderr and a non-zero exit code.

mod bench;
mod client;
mod cluster;
mod cluster_admin;
mod consume;
mod group;
mod node;
mod produce;
mod serve;
mod standalone;
mod topic;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "sluice",
    version,
    about = "Sluice: a cloud-native message queue with compute and storage separated"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run every role in one process, on an embedded metadata store and local storage.
    Standalone(standalone::Args),
    /// Run a controller (cluster mode): elects a leader through etcd and assigns partitions.
    Controller(cluster::controller::Args),
    /// Run only the group coordinator (cluster mode), apart from the controllers.
    Coordinator(cluster::controller::CoordinatorArgs),
    /// Run a broker (cluster mode): writes the partitions assigned to it;
    /// or drain/undrain one.
    Broker(BrokerCommand),
    /// Cluster status and rebalancing (through any proxy).
    #[command(subcommand)]
    Cluster(cluster_admin::ClusterCommand),
    /// Move a partition to another broker.
    #[command(subcommand)]
    Partition(cluster_admin::PartitionCommand),
    /// Run a proxy (cluster mode): the endpoint clients connect to.
    Proxy(cluster::proxy::Args),
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(topic::Command),
    /// Produce one message per line of standard input.
    Produce(produce::Args),
    /// Consumer groups: list, describe (lag), reset offsets, delete.
    #[command(subcommand)]
    Group(group::Command),
    /// Print messages' values, one per line.
    Consume(consume::Args),
    /// Measure produce or consume throughput and latency.
    #[command(subcommand)]
    Bench(bench::Command),
}

/// `sluice broker [FLAGS]` runs a broker; `sluice broker drain ID` drains one.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
struct BrokerCommand {
    #[command(subcommand)]
    action: Option<cluster_admin::BrokerAction>,
    #[command(flatten)]
    run: cluster::broker::Args,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        // Server roles log at info from their own start; client verbs
        // (the SDK inside them) only warnings, unless SLUICE_LOG says more.
        let server = matches!(
            cli.command,
            Command::Standalone(_)
                | Command::Controller(_)
                | Command::Coordinator(_)
                | Command::Proxy(_)
                | Command::Broker(BrokerCommand { action: None, .. })
        );
        if !server {
            serve::init_logging_at("warn");
            quiet_when_stdout_closes();
        }
        match cli.command {
            Command::Standalone(args) => standalone::run(args).await,
            Command::Controller(args) => cluster::controller::run(args).await,
            Command::Coordinator(args) => cluster::controller::run_coordinator(args).await,
            Command::Broker(BrokerCommand {
                action: Some(action),
                ..
            }) => cluster_admin::broker(action).await,
            Command::Broker(BrokerCommand { action: None, run }) => cluster::broker::run(run).await,
            Command::Cluster(command) => cluster_admin::cluster(command).await,
            Command::Partition(command) => cluster_admin::partition(command).await,
            Command::Proxy(args) => cluster::proxy::run(args).await,
            Command::Topic(command) => topic::run(command).await,
            Command::Produce(args) => produce::run(args).await,
            Command::Group(command) => group::run(command).await,
            Command::Consume(args) => consume::run(args).await,
            Command::Bench(command) => bench::run(command).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if stdout_closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", client::one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// `sluice consume … | head`: when whatever reads a client verb's output
/// goes away, the verb stops quietly, as Unix tools do, instead of Rust's
/// print macros panicking on the closed pipe.
fn quiet_when_stdout_closes() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// The error is a write to a closed stdout.
fn stdout_closed(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
