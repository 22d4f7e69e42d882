//! Consumer groups from the command line, through the SDK: `sluice group
//! list|describe|reset|delete`, and `sluice consume --group`, which
//! consumes as a member of a group and commits after printing.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use sluice_sdk::{Admin, Consumer, OffsetReset, ResetTo, TopicPartition};

use crate::client::ServerArgs;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Every group, its state and member count.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Members, their partitions, committed offsets, end offsets and lag.
    Describe {
        group: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Moves a group's committed offsets in every partition of a topic
    /// (the group must have no active members).
    Reset(ResetArgs),
    /// Deletes a group without members, and its committed offsets.
    Delete {
        group: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("to").required(true)))]
pub struct ResetArgs {
    group: String,
    #[arg(long)]
    topic: String,
    /// The earliest offset still stored.
    #[arg(long, group = "to")]
    to_earliest: bool,
    /// The end: skip everything written so far.
    #[arg(long, group = "to")]
    to_latest: bool,
    /// This offset (kept within each partition's stored range).
    #[arg(long, group = "to")]
    to_offset: Option<i64>,
    /// The first message at or after this time: RFC 3339 in UTC
    /// (2026-11-26T08:00:00Z) or milliseconds since the Unix epoch.
    #[arg(long, group = "to")]
    to_datetime: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::List { server } => {
            let groups = admin(&server).await?.list_groups().await?;
            if groups.is_empty() {
                println!("no groups");
            }
            for g in groups {
                println!(
                    "{}\t{}\t{} member(s)\t{}",
                    g.group, g.state, g.members, g.protocol_type
                );
            }
        }
        Command::Describe { group, server } => describe(&admin(&server).await?, &group).await?,
        Command::Reset(args) => {
            let to = if args.to_earliest {
                ResetTo::Earliest
            } else if args.to_latest {
                ResetTo::Latest
            } else if let Some(offset) = args.to_offset {
                ResetTo::Offset(offset)
            } else if let Some(when) = &args.to_datetime {
                ResetTo::Timestamp(parse_datetime(when)?)
            } else {
                bail!("give one of --to-earliest, --to-latest, --to-offset, --to-datetime");
            };
            let offsets = admin(&args.server)
                .await?
                .reset_offsets(&args.group, &args.topic, to)
                .await?;
            for (tp, offset) in offsets {
                println!("{}/{}\t{offset}", tp.topic, tp.partition);
            }
        }
        Command::Delete { group, server } => {
            admin(&server).await?.delete_group(&group).await?;
            println!("deleted group {group}");
        }
    }
    Ok(())
}

async fn admin(server: &ServerArgs) -> anyhow::Result<Admin> {
    Admin::connect(server.endpoints())
        .await
        .with_context(|| format!("cannot connect to {}", server.server))
}

async fn describe(admin: &Admin, group: &str) -> anyhow::Result<()> {
    let g = admin.describe_group(group).await?;
    println!(
        "group {}: {}, generation {}, assignor {}, {} member(s)",
        g.group,
        g.state,
        g.generation,
        if g.assignor.is_empty() {
            "-"
        } else {
            &g.assignor
        },
        g.members.len()
    );
    let mut owner = std::collections::BTreeMap::new();
    for m in &g.members {
        let instance = m.instance_id.as_deref().unwrap_or("-");
        println!(
            "  member {} (client {} at {}, instance {instance}, session {} ms): {} partition(s)",
            m.member_id,
            m.client_id,
            if m.client_host.is_empty() {
                "-"
            } else {
                m.client_host.as_str()
            },
            m.session_timeout.as_millis(),
            m.assignment.len()
        );
        for tp in &m.assignment {
            owner.insert((tp.topic.clone(), tp.partition), m.member_id.clone());
        }
    }
    println!("  TOPIC/PARTITION\tCOMMITTED\tEND\tLAG\tOWNER");
    let mut shown = std::collections::BTreeSet::new();
    for lag in &g.offsets {
        let at = (lag.topic.clone(), lag.partition);
        let end = lag.end_offset.map_or("-".into(), |e| e.to_string());
        let behind = lag.lag.map_or("-".into(), |l| l.to_string());
        let member = owner.get(&at).map_or("-", String::as_str);
        println!(
            "  {}/{}\t{}\t{end}\t{behind}\t{member}",
            lag.topic, lag.partition, lag.committed
        );
        shown.insert(at);
    }
    // Owned partitions with nothing committed yet.
    for ((topic, partition), member) in owner.iter().filter(|(at, _)| !shown.contains(*at)) {
        let end = admin
            .list_offset(topic, *partition, sluice_sdk::OffsetSpec::Latest)
            .await
            .ok()
            .flatten()
            .map_or("-".into(), |e| e.to_string());
        println!("  {topic}/{partition}\t-\t{end}\t-\t{member}");
    }
    Ok(())
}

/// `sluice consume TOPIC --group G`: a group member that prints what it
/// receives and commits it once printed (at-least-once: a message printed
/// but not committed when this process dies is printed again by the member
/// that takes its partition over).
pub struct GroupConsume<'a> {
    pub server: &'a ServerArgs,
    pub topic: &'a str,
    pub group: &'a str,
    pub from_beginning: bool,
    pub count: Option<u64>,
    pub print_offsets: bool,
    pub session_timeout: Duration,
    pub instance_id: Option<&'a str>,
}

impl GroupConsume<'_> {
    pub async fn run(self) -> anyhow::Result<()> {
        let mut builder = Consumer::builder(self.server.endpoints())
            .group(self.group)
            .client_id("sluice-cli")
            .session_timeout(self.session_timeout)
            .auto_commit(None)
            .auto_offset_reset(if self.from_beginning {
                OffsetReset::Earliest
            } else {
                OffsetReset::Latest
            });
        if let Some(instance) = self.instance_id {
            builder = builder.instance_id(instance);
        }
        let mut consumer = builder.build().await?;
        consumer.subscribe([self.topic])?;
        let stop = crate::serve::shutdown_signal()?;
        tokio::pin!(stop);
        let stdout = std::io::stdout();
        let mut printed = 0u64;
        let result = loop {
            let records = tokio::select! {
                _ = &mut stop => break Ok(()),
                records = consumer.poll(Duration::from_secs(1)) => records,
            };
            let records = match records {
                Ok(records) => records,
                // The SDK already retried within its timeouts: keep going
                // while the cluster recovers (a proxy or coordinator moving).
                Err(e) if e.is_retriable() => {
                    tracing::warn!(error = %e, "poll failed; retrying");
                    continue;
                }
                Err(e) => break Err(e.into()),
            };
            if records.is_empty() {
                continue;
            }
            let mut out = stdout.lock();
            let mut done = false;
            let mut last: std::collections::BTreeMap<(u32, &str), i64> = Default::default();
            for r in &records {
                if self.print_offsets {
                    let key = r.key.as_deref().map(String::from_utf8_lossy);
                    write!(
                        out,
                        "{}:{}:{}:",
                        r.partition,
                        r.offset,
                        key.unwrap_or_default()
                    )?;
                }
                out.write_all(r.value.as_deref().unwrap_or_default())?;
                out.write_all(b"\n")?;
                last.insert((r.partition, &r.topic), r.offset);
                printed += 1;
                if self.count.is_some_and(|count| printed >= count) {
                    done = true;
                    break;
                }
            }
            out.flush()?;
            drop(out);
            // Printed (flushed to the pipe): now committed.
            let offsets: Vec<(TopicPartition, i64)> = last
                .into_iter()
                .map(|((p, t), o)| (TopicPartition::new(t, p), o + 1))
                .collect();
            if let Err(e) = consumer.commit_offsets(offsets).await {
                tracing::warn!(error = %e, "commit failed; the messages will be delivered again");
            }
            if done {
                break Ok(());
            }
        };
        consumer.close().await?;
        result
    }
}

/// Milliseconds since the Unix epoch from digits or `YYYY-MM-DDTHH:MM:SS[.fff]Z`.
fn parse_datetime(text: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let bad = || {
        anyhow::anyhow!(
            "bad --to-datetime {text:?}: give RFC 3339 in UTC (2026-11-26T08:00:00Z) or ms since the Unix epoch"
        )
    };
    let body = text.strip_suffix('Z').ok_or_else(bad)?;
    let (date, time) = body.split_once('T').ok_or_else(bad)?;
    let d: Vec<i64> = date
        .split('-')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let (hms, millis) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms
        .split(':')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let (&[y, m, day], &[h, min, s]) = (d.as_slice(), t.as_slice()) else {
        return Err(bad());
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h > 23 || min > 59 || s > 60 {
        return Err(bad());
    }
    if millis.is_empty() || !millis.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let frac: i64 = millis
        .chars()
        .chain(std::iter::repeat('0'))
        .take(3)
        .collect::<String>()
        .parse()
        .map_err(|_| bad())?;
    // Days from 1970-01-01 (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(((days * 24 + h) * 60 + min) * 60_000 + s * 1000 + frac)
}

#[cfg(test)]
mod tests {
    use super::parse_datetime;

    #[test]
    fn datetimes_parse_to_epoch_millis() {
        assert_eq!(parse_datetime("0").expect("parses"), 0);
        assert_eq!(parse_datetime("1970-01-01T00:00:00Z").expect("parses"), 0);
        assert_eq!(
            parse_datetime("2026-11-26T08:00:00.5Z").expect("parses"),
            1_795_680_000_500
        );
        assert_eq!(
            parse_datetime("2000-02-29T12:34:56Z").expect("parses"),
            951_827_696_000
        );
        assert!(parse_datetime("yesterday").is_err());
        assert!(parse_datetime("2026-13-01T00:00:00Z").is_err());
        assert!(parse_datetime("2026-11-26T08:00:00.ééZ").is_err());
    }
}
