//! A minimal client of a Confluent-compatible schema registry: `GET /schemas/ids/{id}`.
//!
//! Only fetching is done here; caching and parsing live in `resolve.rs`, so this module knows
//! nothing of Avro. Blocking (ureq): a fetch happens once per schema id, not per message.

use std::io::Read;
use std::time::Duration;

use serde::Deserialize;

/// Largest registry response accepted, in bytes: a schema is a few KiB.
const MAX_RESPONSE_BYTES: u64 = 1 << 20;

/// Why a schema could not be fetched.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered that it has no schema with that id (HTTP 404, error code 40403).
    #[error("schema id {id} not found in the registry")]
    NotFound { id: u32 },
    /// The registry could not be reached or answered with an error status; retry later.
    #[error("GET {url}: {detail}")]
    Unavailable { url: String, detail: String },
    /// The schema with that id is not an Avro schema.
    #[error("schema id {id} is a {schema_type} schema, not Avro")]
    NotAvro { id: u32, schema_type: String },
    /// The registry answered 200 with something that is not a schema response.
    #[error("GET {url}: unexpected response: {detail}")]
    BadResponse { url: String, detail: String },
}

/// The part of `GET /schemas/ids/{id}`'s answer we use.
#[derive(Deserialize)]
struct SchemaResponse {
    schema: String,
    /// Absent for Avro; "PROTOBUF" or "JSON" for the other formats.
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
}

/// A schema registry at one base URL.
pub struct Registry {
    base: String,
    agent: ureq::Agent,
}

impl Registry {
    /// `base` is like `http://127.0.0.1:8081` (a trailing `/` is fine).
    pub fn new(base: &str, timeout: Duration) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        Registry {
            base: base.trim_end_matches('/').to_owned(),
            agent,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Fetches the text of the Avro schema with this id.
    pub fn fetch(&self, id: u32) -> Result<String, RegistryError> {
        let url = format!("{}/schemas/ids/{id}", self.base);
        let unavailable = |detail: String| RegistryError::Unavailable {
            url: url.clone(),
            detail,
        };
        let mut resp = self
            .agent
            .get(&url)
            .header("Accept", "application/vnd.schemaregistry.v1+json")
            .call()
            .map_err(|e| unavailable(e.to_string()))?;
        let status = resp.status().as_u16();
        let mut body = String::new();
        resp.body_mut()
            .as_reader()
            .take(MAX_RESPONSE_BYTES)
            .read_to_string(&mut body)
            .map_err(|e| unavailable(format!("reading the body: {e}")))?;
        match status {
            200 => {}
            404 => return Err(RegistryError::NotFound { id }),
            s => return Err(unavailable(format!("HTTP {s}: {}", body.trim()))),
        }
        let parsed: SchemaResponse =
            serde_json::from_str(&body).map_err(|e| RegistryError::BadResponse {
                url: url.clone(),
                detail: e.to_string(),
            })?;
        match parsed.schema_type.as_deref() {
            None | Some("AVRO") => Ok(parsed.schema),
            Some(other) => Err(RegistryError::NotAvro {
                id,
                schema_type: other.to_owned(),
            }),
        }
    }
}
