//! One HTTP POST, on a blocking thread (ureq; a few requests per round, never per event), with
//! the target's timeout. `Ok` only for a 2xx answer.

use std::time::Duration;

/// Why a POST failed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    /// Status and body, or the connection error.
    pub text: String,
    /// The receiver refused this request for good (a 4xx other than 408 and 429): sending it
    /// again cannot succeed, so it must not hold up the target's queue.
    pub permanent: bool,
}

/// Posts `body` as JSON with `headers`.
pub(crate) async fn post(
    url: String,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
    timeout: Duration,
) -> Result<(), Failure> {
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
                let status = resp.status().as_u16();
                let text = resp
                    .body_mut()
                    .with_config()
                    .limit(512)
                    .read_to_string()
                    .unwrap_or_default();
                Err(Failure {
                    text: format!("HTTP {status}: {}", text.trim()),
                    permanent: (400..500).contains(&status) && status != 408 && status != 429,
                })
            }
            Err(e) => Err(Failure {
                text: e.to_string(),
                permanent: false,
            }),
        }
    });
    task.await.unwrap_or_else(|e| {
        Err(Failure {
            text: format!("sender task: {e}"),
            permanent: false,
        })
    })
}
