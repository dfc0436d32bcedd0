//! The one typed config: defaults < `perfstream.toml` (`--config` or `PERFSTREAM_CONFIG`) <
//! `PERFSTREAM_*` environment variables (`__` separates levels:
//! `PERFSTREAM_KAFKA__BOOTSTRAP_SERVERS`). `DATABASE_URL`, when set, is the default of
//! `postgres.url`. Unknown keys are rejected; every error names the key and what was expected.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use perfstream_kafka::{KafkaSettings, PipelineSettings};
use perfstream_store::ConnectSettings;
use serde::{Deserialize, Serialize};

/// Where rollups, progress and alerts live.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresSettings {
    /// Connection URL; TLS options go in it (`?sslmode=require`). Default
    /// `postgres://postgres@127.0.0.1:5432/perfstream`, or `DATABASE_URL` when set.
    pub url: String,
    /// Pool size. Default 8.
    pub max_connections: u32,
    /// Deadlines and dead-peer detection of every connection (`[postgres.connection]`).
    pub connection: ConnectSettings,
}

impl Default for PostgresSettings {
    fn default() -> Self {
        PostgresSettings {
            url: "postgres://postgres@127.0.0.1:5432/perfstream".into(),
            max_connections: 8,
            connection: ConnectSettings::default(),
        }
    }
}

/// Log output.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `text` or `json`. Default `text`.
    pub format: LogFormat,
    /// tracing filter directives; `RUST_LOG` overrides. Default `info`.
    pub filter: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Text,
            filter: "info".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub kafka: KafkaSettings,
    pub postgres: PostgresSettings,
    pub window: perfstream_window::WindowConfig,
    pub pipeline: PipelineSettings,
    pub decode: perfstream_events::DecodeConfig,
    /// Alert rules and the evaluator (see docs/alerts.md).
    pub alerts: perfstream_alerts::AlertSettings,
    /// Alert notifications: Alertmanager and webhook targets, routes (see docs/alerts.md).
    pub notify: perfstream_notify::NotifySettings,
    /// Tier rebuilds ('1h', '1d') and retention.
    pub maintenance: perfstream_store::MaintenanceSettings,
    /// `/metrics`, `/healthz`, `/readyz` and the dashboard.
    pub http: perfstream_http::HttpSettings,
    pub log: LogSettings,
}

impl Config {
    pub fn figment(file: Option<&Path>) -> Figment {
        // Defaults come from `#[serde(default)]` on every settings struct.
        let mut f = Figment::new();
        if let Ok(url) = std::env::var("DATABASE_URL") {
            f = f.merge(Serialized::default("postgres.url", url));
        }
        let file: Option<PathBuf> = file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("PERFSTREAM_CONFIG").map(PathBuf::from));
        if let Some(path) = file {
            f = f.merge(Toml::file_exact(path));
        }
        f.merge(
            Env::prefixed("PERFSTREAM_")
                .ignore(&["config", "failpoint", "bootstrap"])
                .split("__"),
        )
    }

    /// Loads the config, or returns every extraction error, each naming its key.
    pub fn load(file: Option<&Path>) -> Result<Config, String> {
        Self::figment(file)
            .extract()
            .map_err(|e| {
                e.into_iter()
                    .map(|e| {
                        let key = if e.path.is_empty() {
                            "(top level)".to_string()
                        } else {
                            e.path.join(".")
                        };
                        let src = e
                            .metadata
                            .as_ref()
                            .map(|m| format!(" (from {})", m.name))
                            .unwrap_or_default();
                        format!("config key `{key}`{src}: {}", e.kind)
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .and_then(|c: Config| {
                // Cross-field checks (route targets exist, URLs, rates) name their key too.
                c.notify.validate().map_err(|e| e.to_string())?;
                Ok(c)
            })
    }

    /// The effective config as TOML with secrets (passwords, SASL, keys) redacted.
    pub fn redacted_toml(&self) -> String {
        let mut c = self.clone();
        c.postgres.url = redact_url(&c.postgres.url);
        for (k, v) in c.kafka.librdkafka.iter_mut() {
            let k = k.to_ascii_lowercase();
            if [
                "password",
                "secret",
                "sasl.oauthbearer.config",
                "key.pem",
                "ssl.key",
            ]
            .iter()
            .any(|s| k.contains(s))
            {
                *v = "<redacted>".into();
            }
        }
        for t in &mut c.notify.targets {
            if t.secret.is_some() {
                t.secret = Some("<redacted>".into());
            }
        }
        toml::to_string_pretty(&c).unwrap_or_else(|e| format!("# cannot render config: {e}"))
    }
}

pub fn redact_url(url: &str) -> String {
    // scheme://user:password@host -> scheme://user:<redacted>@host
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((creds, host)) = rest.split_once('@')
        && let Some((user, _)) = creds.split_once(':')
    {
        return format!("{scheme}://{user}:<redacted>@{host}");
    }
    url.to_string()
}

#[cfg(test)]
// `Jail::expect_with` closures return figment's large `Error`; their signature is not ours.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn layers_defaults_file_env() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file(
                "p.toml",
                "[kafka]\nbootstrap_servers = \"file:9092\"\ngroup_id = \"g-file\"\n",
            )?;
            jail.set_env("PERFSTREAM_KAFKA__GROUP_ID", "g-env");
            let c = Config::load(Some(Path::new("p.toml"))).expect("loads");
            assert_eq!(c.kafka.bootstrap_servers, "file:9092");
            assert_eq!(c.kafka.group_id, "g-env");
            assert_eq!(c.kafka.topics.query, "perf.query");
            Ok(())
        });
    }

    #[test]
    fn example_file_is_valid_and_matches_the_defaults() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../perfstream.example.toml");
            let c = Config::load(Some(&path)).expect("perfstream.example.toml loads");
            assert_eq!(c, Config::default(), "the example documents the defaults");
            Ok(())
        });
    }

    #[test]
    fn unknown_key_is_named() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("PERFSTREAM_KAFKA__BOOTSTRAP", "x");
            let err = Config::load(None).expect_err("unknown key rejected");
            assert!(err.contains("bootstrap"), "{err}");
            assert!(err.contains("unknown field"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn wrong_type_names_key_and_expectation() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file("p.toml", "[kafka]\nsession_timeout_ms = \"soon\"\n")?;
            let err = Config::load(Some(Path::new("p.toml"))).expect_err("bad type rejected");
            assert!(err.contains("kafka.session_timeout_ms"), "{err}");
            assert!(err.contains("u32") || err.contains("integer"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn database_url_is_default_and_redacted() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("DATABASE_URL", "postgres://u:hunter2@db/x");
            // librdkafka keys contain dots, so they are set in the file (figment nests dotted env keys).
            jail.create_file(
                "p.toml",
                "[kafka.librdkafka]\n\"sasl.password\" = \"s3cret\"\n",
            )?;
            let c = Config::load(Some(Path::new("p.toml"))).expect("loads");
            assert_eq!(c.postgres.url, "postgres://u:hunter2@db/x");
            let shown = c.redacted_toml();
            assert!(
                !shown.contains("hunter2") && !shown.contains("s3cret"),
                "{shown}"
            );
            Ok(())
        });
    }
}

/// The commented-out examples of `perfstream.example.toml` (issue 14, section 7): each block
/// that starts with a commented table header is uncommented and loaded through the real loader,
/// so a key the loader refuses (`for_windows`, `matches`) cannot be documented again.
#[cfg(test)]
// `Jail::expect_with` closures return figment's large `Error`; their signature is not ours.
#[allow(clippy::result_large_err)]
mod example_comments {
    use super::*;
    use figment::Jail;

    /// The example file with every commented block that opens with `# [` uncommented.
    fn uncommented_example() -> (String, usize) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../perfstream.example.toml");
        let text = std::fs::read_to_string(path).expect("perfstream.example.toml reads");
        let (mut out, mut blocks, mut in_block) = (String::new(), 0, false);
        for line in text.lines() {
            if line.starts_with("# [") {
                in_block = true;
                blocks += 1;
            } else if !line.starts_with("# ") {
                in_block = false;
            }
            out.push_str(if in_block { &line[2..] } else { line });
            out.push('\n');
        }
        (out, blocks)
    }

    #[test]
    fn commented_alert_examples_load() {
        let (toml, blocks) = uncommented_example();
        assert!(
            blocks >= 2,
            "expected the rule and override examples:\n{toml}"
        );
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file("p.toml", &toml)?;
            let c = Config::load(Some(Path::new("p.toml")))
                .unwrap_or_else(|e| panic!("uncommented example refused:\n{e}\n{toml}"));
            let rule = &c.alerts.rules.slow_query;
            assert_eq!(rule.threshold, Some(1500.0));
            assert_eq!(rule.for_windows, Some(3));
            let [o] = c.alerts.overrides.as_slice() else {
                panic!("one override expected: {:?}", c.alerts.overrides)
            };
            assert_eq!(
                o.matches.get("service").map(String::as_str),
                Some("checkout")
            );
            assert_eq!(o.set.threshold, Some(800.0));
            Ok(())
        });
    }

    #[test]
    fn the_old_keys_are_refused() {
        // Guards the check above: the loader does refuse the keys the audit found documented.
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file("p.toml", "[alerts.rules.slow_query]\nfor_windows = 3\n")?;
            let err = Config::load(Some(Path::new("p.toml"))).expect_err("for_windows refused");
            assert!(err.contains("for_windows"), "{err}");
            jail.create_file(
                "q.toml",
                "[[alerts.overrides]]\nrule = \"endpoint_sla\"\nmatches = { service = \"x\" }\nset = {}\n",
            )?;
            let err = Config::load(Some(Path::new("q.toml"))).expect_err("matches refused");
            assert!(err.contains("matches"), "{err}");
            Ok(())
        });
    }
}
