//! The `[http]` section of the config.

use serde::{Deserialize, Serialize};

/// Where the operations endpoints listen. Knows nothing of figment: the binary's `Config`
/// embeds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Address the HTTP server binds (`/metrics`, `/healthz`, `/readyz`, `/api/*`, `/`).
    /// Loopback by default because the dashboard and API have no authentication: expose it
    /// through a proxy, or set `0.0.0.0:9464` only on a trusted network. Port 0 picks a free
    /// port. Default: `"127.0.0.1:9464"` (9464 is the usual Prometheus exporter port).
    pub listen: String,
    /// Run the server at all. When false, `serve` returns at once without binding.
    /// Default: `true`.
    pub enabled: bool,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9464".to_owned(),
            enabled: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_fields_take_their_defaults_and_unknown_ones_are_refused() {
        let s: HttpSettings = serde_json::from_str(r#"{"enabled": false}"#).expect("valid");
        assert_eq!(s.listen, "127.0.0.1:9464");
        assert!(!s.enabled);
        let err = serde_json::from_str::<HttpSettings>(r#"{"listne": "0.0.0.0:1"}"#)
            .expect_err("unknown key");
        assert!(err.to_string().contains("listne"), "{err}");
    }
}
