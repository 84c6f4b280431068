//! Every request ends and every shared resource is bounded.
//!
//! A request runs in a [`Scope`]: its principal (who asks), a deadline (the host's `--request-timeout`, or the
//! client's shorter gRPC deadline) and the host's shutdown. Past either, the scope
//! drops the work it wraps, and dropping is what stops it: a query's DuckDB
//! connection is interrupted, a plugin chain's guests are trapped, an upload stream
//! ends in an error so its write is aborted. Queries and plugin chains also take a
//! [`Slot`] from a bounded pool, waiting at most `--queue-timeout` for one.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::auth::Principal;
use crate::config::RequestLimits;
use crate::error::{Error, Result};

pub struct Limits {
    settings: RequestLimits,
    queries: Arc<Semaphore>,
    plugins: Arc<Semaphore>,
    /// Cancelled when the host stops waiting for running requests.
    shutdown: CancellationToken,
}

/// A place in a bounded pool, given back when dropped.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl Limits {
    pub fn new(settings: RequestLimits) -> Self {
        Self {
            queries: Arc::new(Semaphore::new(settings.max_concurrent_queries as usize)),
            plugins: Arc::new(Semaphore::new(settings.max_concurrent_plugins() as usize)),
            settings,
            shutdown: CancellationToken::new(),
        }
    }

    /// The scope of one request from `principal`; `client_timeout` is its gRPC
    /// deadline, if it sent one.
    pub fn scope(&self, principal: Arc<Principal>, client_timeout: Option<Duration>) -> Scope {
        let timeout = self.settings.request_timeout();
        let (timeout, whose) = match client_timeout {
            Some(client) if client < timeout => (client, "the client's deadline"),
            _ => (timeout, "the host's --request-timeout"),
        };
        Scope {
            principal,
            deadline: Instant::now() + timeout,
            timeout,
            whose,
            stop: self.shutdown.child_token(),
            idle_upload: self.settings.idle_upload_timeout(),
        }
    }

    /// Stop every running request now (the end of a shutdown's grace period).
    pub fn cancel_all(&self) {
        self.shutdown.cancel();
    }

    pub async fn query_slot(&self) -> Result<Slot> {
        self.slot(&self.queries, "queries", "--max-concurrent-queries")
            .await
    }

    pub async fn plugin_slot(&self) -> Result<Slot> {
        self.slot(&self.plugins, "plugin chains", "--max-concurrent-plugins")
            .await
    }

    async fn slot(&self, pool: &Arc<Semaphore>, what: &str, setting: &str) -> Result<Slot> {
        let wait = self.settings.queue_timeout();
        match tokio::time::timeout(wait, pool.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Slot { _permit: permit }),
            Ok(Err(_)) => Err(Error::internal(format!("the pool of {what} is closed"))),
            Err(_) => Err(Error::ResourceExhausted(format!(
                "the host is running as many {what} as it allows ({setting}) and none ended \
                 within {wait:?}; try again later"
            ))),
        }
    }
}

/// Whose one request is, and when it must end.
#[derive(Clone)]
pub struct Scope {
    principal: Arc<Principal>,
    deadline: Instant,
    timeout: Duration,
    whose: &'static str,
    stop: CancellationToken,
    idle_upload: Duration,
}

impl Scope {
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// `work` to its end, or an error at the deadline or shutdown (`work` is
    /// dropped, which stops it).
    pub async fn run<T>(&self, what: &str, work: impl Future<Output = Result<T>>) -> Result<T> {
        tokio::select! {
            outcome = work => outcome,
            _ = tokio::time::sleep_until(self.deadline) => Err(self.expired(what)),
            _ = self.stop.cancelled() => Err(stopping(what)),
        }
    }

    /// `items` until they end, or an error item at the deadline or shutdown, after
    /// which the stream ends and `items` is dropped.
    pub fn stream<T: Send + 'static>(
        self,
        what: &'static str,
        items: impl Stream<Item = Result<T>> + Send + 'static,
    ) -> BoxStream<'static, Result<T>> {
        self.bounded(what, items, None)
    }

    /// An upload's items: as [`Scope::stream`], and also an error when the client
    /// sends nothing for the idle-upload timeout.
    pub fn upload<T: Send + 'static>(
        self,
        items: impl Stream<Item = Result<T>> + Send + 'static,
    ) -> BoxStream<'static, Result<T>> {
        let idle = Some(self.idle_upload);
        self.bounded("the upload", items, idle)
    }

    fn bounded<T: Send + 'static>(
        self,
        what: &'static str,
        items: impl Stream<Item = Result<T>> + Send + 'static,
        idle: Option<Duration>,
    ) -> BoxStream<'static, Result<T>> {
        let items = Box::pin(items);
        futures::stream::unfold(Some((self, items)), move |state| async move {
            let (scope, mut items) = state?;
            let quiet = idle.map_or(scope.deadline, |idle| Instant::now() + idle);
            // `biased`, bounds first: a stream that always has an item ready still
            // ends at its deadline, and at the deadline its error wins over the idle one.
            let outcome = tokio::select! {
                biased;
                _ = tokio::time::sleep_until(scope.deadline) => Some((Err(scope.expired(what)), true)),
                _ = scope.stop.cancelled() => Some((Err(stopping(what)), true)),
                _ = tokio::time::sleep_until(quiet), if idle.is_some() => Some((Err(Error::DeadlineExceeded(format!(
                    "{what} sent nothing for {:?} (--idle-upload-timeout); nothing was committed",
                    idle.unwrap_or_default()
                ))), true)),
                item = items.next() => item.map(|item| (item, false)),
            };
            let (item, last) = outcome?;
            Some((item, (!last).then_some((scope, items))))
        })
        .boxed()
    }

    fn expired(&self, what: &str) -> Error {
        Error::DeadlineExceeded(format!(
            "{what} was stopped after {:?}, {}",
            self.timeout, self.whose
        ))
    }
}

fn stopping(what: &str) -> Error {
    Error::Cancelled(format!("{what} was stopped: the host is shutting down"))
}

/// A stream that keeps `guard` alive as long as it is (a query's slot, say).
pub fn holding<T: Send + 'static, G: Send + 'static>(
    items: BoxStream<'static, T>,
    guard: G,
) -> BoxStream<'static, T> {
    items
        .map(move |item| {
            let _ = &guard;
            item
        })
        .boxed()
}

/// A client's `grpc-timeout` header ("100m", "30S", ...), as a duration.
pub fn grpc_timeout(metadata: &tonic::metadata::MetadataMap) -> Option<Duration> {
    let text = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (value, unit) = text.split_at(text.len().checked_sub(1)?);
    let value: u64 = value.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value.saturating_mul(3600)),
        "M" => Duration::from_secs(value.saturating_mul(60)),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_by_unit() {
        let mut metadata = tonic::metadata::MetadataMap::new();
        for (text, expected) in [
            ("3S", Some(Duration::from_secs(3))),
            ("250m", Some(Duration::from_millis(250))),
            ("2M", Some(Duration::from_secs(120))),
            ("7x", None),
            ("S", None),
        ] {
            metadata.insert("grpc-timeout", text.parse().unwrap());
            assert_eq!(grpc_timeout(&metadata), expected, "{text}");
        }
    }

    #[tokio::test]
    async fn a_stream_past_its_deadline_ends_in_an_error() {
        let limits = Limits::new(RequestLimits::default());
        let scope = limits.scope(
            Arc::new(Principal::anonymous()),
            Some(Duration::from_millis(50)),
        );
        let forever = futures::stream::pending::<Result<()>>();
        let items: Vec<_> = scope.stream("the read", forever).collect().await;
        assert!(matches!(
            items.as_slice(),
            [Err(Error::DeadlineExceeded(_))]
        ));
    }

    #[tokio::test]
    async fn a_full_pool_answers_resource_exhausted() {
        let limits = Limits::new(RequestLimits {
            max_concurrent_queries: 1,
            queue_timeout: 0.05,
            ..RequestLimits::default()
        });
        let held = limits.query_slot().await.unwrap();
        assert!(matches!(
            limits.query_slot().await,
            Err(Error::ResourceExhausted(_))
        ));
        drop(held);
        limits.query_slot().await.unwrap();
    }
}
