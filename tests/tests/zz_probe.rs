use bytes::Bytes;
use sluice_record::{BatchBuilder, Compression};
use sluice_tests::*;

#[tokio::test]
async fn probe_create_then_produce() -> anyhow::Result<()> {
    let server = Standalone::start_temp(&[])?;
    let mut client = server.data().await?;
    let mut failures = Vec::new();
    for n in 0..100 {
        let topic = format!("t{n}");
        server.create_topic(&topic, 4, None).await?;
        let mut b = BatchBuilder::new(Compression::None);
        b.push(1, None, Some(b"x"), &[])?;
        let batch: Bytes = b.build()?;
        for p in 0..4 {
            if let Err(s) = produce(&mut client, &topic, p, batch.clone()).await {
                failures.push(format!("{topic}/{p}: {:?} {:?} {}", s.code(), error_code(&s), s.message()));
            }
            if let Err(s) = client.fetch(fetch_request(&topic, p, 0)).await {
                failures.push(format!("fetch {topic}/{p}: {:?} {:?} {}", s.code(), error_code(&s), s.message()));
            }
        }
    }
    println!("{failures:#?}");
    assert!(failures.is_empty());
    Ok(())
}
