//! The error of this crate.

/// Why the HTTP server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The listen address could not be bound (in use, not local, not an address).
    #[error("cannot listen on {listen}")]
    Bind {
        listen: String,
        #[source]
        source: std::io::Error,
    },
    /// Accepting connections failed after the server started.
    #[error("HTTP server failed")]
    Serve(#[source] std::io::Error),
}
