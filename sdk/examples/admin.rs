//! Creates TOPIC (if it does not exist), describes it, then lists the
//! consumer groups with the lag of each partition.
//!
//! ```text
//! cargo run -p sluice-sdk --example admin -- [SERVER [TOPIC]]
//! ```
//!
//! SERVER defaults to `$SLUICE_SERVER`, else 127.0.0.1:7070.

use sluice_sdk::{Admin, TopicConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let server = args
        .next()
        .or_else(|| std::env::var("SLUICE_SERVER").ok())
        .unwrap_or_else(|| "127.0.0.1:7070".to_owned());
    let topic = args.next().unwrap_or_else(|| "example".to_owned());

    let admin = Admin::connect([server]).await?;
    match admin.create_topic(&topic, 4, TopicConfig::default()).await {
        Ok(_) => println!("created topic {topic}"),
        Err(error) if error.code() == Some("TOPIC_EXISTS") => println!("topic {topic} exists"),
        Err(error) => return Err(error.into()),
    }
    let description = admin.describe_topic(&topic).await?;
    println!("topic {} (id {}):", description.name, description.id);
    for partition in &description.partitions {
        println!(
            "  partition {}: broker {} (epoch {}), offsets {}..{}",
            partition.partition,
            partition.broker,
            partition.epoch,
            partition.start_offset,
            partition.end_offset
        );
    }

    for summary in admin.list_groups().await? {
        println!(
            "group {}: {}, {} members",
            summary.group, summary.state, summary.members
        );
        let group = admin.describe_group(&summary.group).await?;
        for member in &group.members {
            println!("  member {} owns {:?}", member.member_id, member.assignment);
        }
        for offsets in &group.offsets {
            let lag = offsets.lag.map_or("?".to_owned(), |lag| lag.to_string());
            println!(
                "  {}/{}: committed {}, lag {lag}",
                offsets.topic, offsets.partition, offsets.committed
            );
        }
    }
    Ok(())
}
