//! Connecting to a Sluice server and turning errors into one readable line.

use anyhow::Context;
use sluice_proto::v1::admin_client::AdminClient;
use sluice_proto::v1::sluice_client::SluiceClient;
use tonic::transport::{Channel, Endpoint};

/// Largest message the clients send or accept.
const MAX_MESSAGE_BYTES: usize = 128 << 20;

/// The `--server` flag of every client verb.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// Address of a Sluice server (standalone or proxy), host:port.
    #[arg(long, env = "SLUICE_SERVER", default_value = "127.0.0.1:7070")]
    pub server: String,
}

impl ServerArgs {
    /// The addresses in `--server` (comma-separated: the SDK fails over
    /// between them).
    pub fn endpoints(&self) -> Vec<String> {
        self.server
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    pub async fn channel(&self) -> anyhow::Result<Channel> {
        let uri = if self.server.contains("://") {
            self.server.clone()
        } else {
            format!("http://{}", self.server)
        };
        let endpoint = Endpoint::from_shared(uri)
            .with_context(|| format!("bad --server address {:?}", self.server))?;
        endpoint
            .tcp_nodelay(true)
            .connect_timeout(std::time::Duration::from_secs(5))
            .connect()
            .await
            .with_context(|| format!("cannot connect to the Sluice server at {}", self.server))
    }

    pub async fn data(&self) -> anyhow::Result<SluiceClient<Channel>> {
        Ok(data_client(self.channel().await?))
    }

    pub async fn admin(&self) -> anyhow::Result<AdminClient<Channel>> {
        Ok(AdminClient::new(self.channel().await?))
    }
}

pub fn data_client(channel: Channel) -> SluiceClient<Channel> {
    SluiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// The whole error chain on one line; a gRPC status shows only its message.
pub fn one_line(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = match cause.downcast_ref::<tonic::Status>() {
            Some(status) if status.message().is_empty() => format!("{:?}", status.code()),
            Some(status) => status.message().to_owned(),
            None => cause.to_string(),
        };
        let text = text.replace('\n', " ");
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}
