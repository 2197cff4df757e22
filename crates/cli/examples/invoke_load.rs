//! Load for Lambda's Invoke API (`POST /2015-03-31/functions/NAME/invocations`): N
//! invocations over C keep-alive connections, against `shoal serve` or `cargo lambda
//! watch` alike. Prints `{"invocations", "seconds", "per_second"}`.
//!   cargo run --release --example invoke_load -- URL N C

use std::time::Instant;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, n, c] = args.as_slice() else {
        anyhow::bail!("usage: invoke_load URL N C");
    };
    let (n, c): (usize, usize) = (n.parse()?, c.parse()?);
    // reqwest is built without a TLS provider of its own.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..c {
        let url = url.clone();
        let share = n / c + usize::from(i < n % c);
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for k in 0..share {
                let body = format!("{{\"op\":\"echo\",\"k\":{k}}}");
                let r = client.post(&url).body(body).send().await?;
                anyhow::ensure!(r.status().is_success(), "HTTP {}", r.status());
                r.bytes().await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let s = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"invocations": n, "seconds": s, "per_second": n as f64 / s})
    );
    Ok(())
}
