//! One HTTP POST, on a blocking thread (ureq; a few requests per round, never per event), with
//! the target's timeout. `Ok` only for a 2xx answer.

use std::time::Duration;

/// Posts `body` as JSON with `headers`; returns a short description of the failure otherwise.
pub(crate) async fn post(
    url: String,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
    timeout: Duration,
) -> Result<(), String> {
    let task = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        let mut req = agent.post(&url).header("Content-Type", "application/json");
        for (k, v) in &headers {
            req = req.header(*k, v);
        }
        match req.send(&body[..]) {
            Ok(resp) if resp.status().is_success() => Ok(()),
            Ok(mut resp) => {
                let text = resp
                    .body_mut()
                    .with_config()
                    .limit(512)
                    .read_to_string()
                    .unwrap_or_default();
                Err(format!("HTTP {}: {}", resp.status().as_u16(), text.trim()))
            }
            Err(e) => Err(e.to_string()),
        }
    });
    task.await
        .unwrap_or_else(|e| Err(format!("sender task: {e}")))
}
