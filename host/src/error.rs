//! The library's error type and its mapping to Flight (gRPC) status codes.

use tonic::{Code, Status};

/// Everything that can go wrong while serving a request, classified by what the
/// client can do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    Cancelled(String),
    /// A request floe understands but does not serve (a Flight SQL command it lacks).
    #[error("{0}")]
    Unimplemented(String),
    /// A service floe depends on (the catalog database) cannot be reached now.
    #[error("{0}")]
    Unavailable(String),
    #[error("{context}: {source}")]
    Iceberg {
        context: String,
        #[source]
        source: Box<iceberg::Error>,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidArgument(msg.into())
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::NotFound(msg.into())
    }
    pub fn internal(msg: impl Into<String>) -> Self {
        Self::Internal(msg.into())
    }

    /// The gRPC status code a Flight client sees for this error.
    pub fn code(&self) -> Code {
        match self {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::ResourceExhausted(_) => Code::ResourceExhausted,
            Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Error::Cancelled(_) => Code::Cancelled,
            Error::Unimplemented(_) => Code::Unimplemented,
            Error::Unavailable(_) => Code::Unavailable,
            Error::Iceberg { source, .. } => match source.kind() {
                iceberg::ErrorKind::TableNotFound | iceberg::ErrorKind::NamespaceNotFound => {
                    Code::NotFound
                }
                iceberg::ErrorKind::TableAlreadyExists
                | iceberg::ErrorKind::NamespaceAlreadyExists => Code::AlreadyExists,
                iceberg::ErrorKind::DataInvalid | iceberg::ErrorKind::FeatureUnsupported => {
                    Code::InvalidArgument
                }
                _ => Code::Internal,
            },
            Error::Io { .. } | Error::Internal(_) => Code::Internal,
        }
    }
}

/// How much of a client's input an error message quotes.
const QUOTED_CHARS: usize = 200;
/// The longest message a status carries: gRPC clients refuse large metadata.
const MESSAGE_CHARS: usize = 2_000;

/// `text` quoted for an error message, cut to its first 200 characters.
pub fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTED_CHARS) {
        None => format!("{text:?}"),
        Some((end, _)) => format!("{:?}… ({} bytes)", &text[..end], text.len()),
    }
}

/// Text from a client (or a parser quoting it), cut to a few hundred characters.
pub fn clip(text: &str) -> String {
    match text.char_indices().nth(QUOTED_CHARS + 100) {
        None => text.to_string(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

fn cut(message: String) -> String {
    match message.char_indices().nth(MESSAGE_CHARS) {
        None => message,
        Some((end, _)) => format!("{}… (cut)", &message[..end]),
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        let code = err.code();
        if code == Code::Internal {
            tracing::error!(error = %err, "request failed");
        } else {
            tracing::debug!(error = %err, ?code, "request refused");
        }
        Status::new(code, cut(err.to_string()))
    }
}

/// Attach a human-readable context to library errors, in the style of `anyhow::Context`.
pub trait Context<T> {
    fn context(self, context: impl Into<String>) -> Result<T>;
    fn with_context<F: FnOnce() -> String>(self, f: F) -> Result<T>
    where
        Self: Sized,
    {
        self.context(f())
    }
}

impl<T> Context<T> for std::result::Result<T, iceberg::Error> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|source| Error::Iceberg {
            context: context.into(),
            source: Box::new(source),
        })
    }
}

impl<T> Context<T> for std::result::Result<T, std::io::Error> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: context.into(),
            source,
        })
    }
}

impl<T> Context<T> for std::result::Result<T, parquet::errors::ParquetError> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|source| Error::Internal(format!("{}: {source}", context.into())))
    }
}

/// Arrow failures inside the host (projecting, filtering, coalescing, casting to the
/// table's layout) are the host's: a client's malformed Arrow is caught where its
/// upload is decoded and reported there as InvalidArgument.
impl From<arrow::error::ArrowError> for Error {
    fn from(err: arrow::error::ArrowError) -> Self {
        Error::Internal(format!("Arrow: {err}"))
    }
}

impl From<Status> for Error {
    fn from(status: Status) -> Self {
        match status.code() {
            Code::Cancelled => Error::Cancelled(status.message().to_string()),
            Code::InvalidArgument => Error::InvalidArgument(status.message().to_string()),
            Code::DeadlineExceeded => Error::DeadlineExceeded(status.message().to_string()),
            Code::ResourceExhausted => Error::ResourceExhausted(status.message().to_string()),
            _ => Error::Internal(format!("{}: {}", status.code(), status.message())),
        }
    }
}
