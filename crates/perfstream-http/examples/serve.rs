//! The HTTP server alone, on a database of rollups (e.g. one `perfstream demo --keep` left),
//! with idle pipeline counters: a way to look at the dashboard without a pipeline.
//!
//! ```text
//! DATABASE_URL=postgres://... cargo run -p perfstream-http --example serve -- 127.0.0.1:9464
//! ```

use std::sync::Arc;

use perfstream_http::{HttpSettings, serve};
use perfstream_pipeline::PipelineStats;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL").map_err(|_| "set DATABASE_URL")?;
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| HttpSettings::default().listen);
    let pool = sqlx::PgPool::connect(&url).await?;
    perfstream_store::MIGRATOR.run(&pool).await?;
    let settings = HttpSettings {
        listen,
        enabled: true,
    };
    println!("dashboard: http://{}/", settings.listen);
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    serve(settings, Arc::new(PipelineStats::default()), pool, stop).await?;
    Ok(())
}
