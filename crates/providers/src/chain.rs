//! The fallback chain: targets in order, each guarded by its breaker; a connection refused is
//! retried once on the same target after a short jittered backoff; a target that fails with
//! an availability error hands over to the next. A stream commits to a target when its first
//! chunk arrives, so a stream that fails before its first byte still falls back; nothing is
//! retried after that.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use portcullis_core::money::Usage;
use serde_json::{Map, Value};
use tracing::Instrument;

use portcullis_core::net::Destinations;

use crate::breaker::Breakers;
use crate::error::ProviderError;
use crate::exchange::wants_usage;
use crate::provider::{self, Http, Native, Provider};
use crate::target::{ProviderKind, Target};

/// The adapters of every built-in provider over one pooled HTTP client, and the breakers of
/// every target.
pub struct Upstreams {
    /// One circuit per target, keyed by `Target::circuit`.
    pub breakers: Breakers,
    /// The adapter of each kind, in `ProviderKind::ALL`'s order (its discriminant), built-in
    /// unless replaced (`with_provider`).
    adapters: [Arc<dyn Provider>; ProviderKind::ALL.len()],
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams")
            .field("breakers", &self.breakers)
            .finish_non_exhaustive()
    }
}

impl Upstreams {
    /// One client for every upstream: rustls with certificate verification, no redirects (a
    /// provider key must not follow one), TCP_NODELAY, bounded connect time, and host names
    /// resolved only to the addresses `egress.destinations` allows (no link-local or cloud
    /// metadata, no loopback or private network outside the operator's list). Proxy
    /// environment variables are ignored (AV-4): a process environment is not where an operator
    /// decides where provider keys go; `Egress::proxy` is.
    pub fn new(
        connect_timeout: Duration,
        breakers: Breakers,
        egress: &Egress,
    ) -> Result<Self, ProviderError> {
        let destinations = Arc::new(egress.destinations.clone());
        let builder = match &egress.proxy {
            None => reqwest::Client::builder().no_proxy(),
            Some(url) => {
                reqwest::Client::builder().proxy(reqwest::Proxy::all(url.as_str()).map_err(
                    |_| ProviderError::Unsupported("`providers.proxy` is not a proxy URL".into()),
                )?)
            }
        };
        let client = builder
            .dns_resolver(Arc::new(GuardedResolver {
                destinations: Arc::clone(&destinations),
            }))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| ProviderError::Unsupported("cannot build the HTTP client".into()))?;
        let http = Arc::new(Http {
            client,
            destinations,
        });
        let adapters = ProviderKind::ALL.map(|kind| provider::built_in(kind, &http));
        Ok(Self { breakers, adapters })
    }

    /// The adapter that serves targets of `kind`.
    pub fn provider(&self, kind: ProviderKind) -> Arc<dyn Provider> {
        Arc::clone(&self.adapters[kind as usize])
    }

    /// Serves targets of `kind` with `adapter` instead of the built-in one (a test's mock, or
    /// an embedding service's own client for that API). The egress rules bind the built-in
    /// adapters only: `adapter` decides itself where it sends.
    pub fn with_provider(mut self, kind: ProviderKind, adapter: Arc<dyn Provider>) -> Self {
        self.adapters[kind as usize] = adapter;
        self
    }
}

/// Where the outbound client may send provider requests: the operator's choices.
#[derive(Debug, Clone, Default)]
pub struct Egress {
    /// The addresses provider requests may reach.
    pub destinations: Destinations,
    /// The one proxy every upstream request goes through, if any (`http://`, `https://` or
    /// `socks5://`); none by default, whatever the environment says.
    pub proxy: Option<String>,
}

/// Resolves host names, dropping the addresses the operator does not allow (DNS rebinding
/// towards a metadata service or a private network). The port is not known here: the
/// gateway's own listener is refused only where a URL names it (`Upstreams::check`), and a
/// host name that leads back to the gateway meets the hop header.
struct GuardedResolver {
    destinations: Arc<Destinations>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let destinations = Arc::clone(&self.destinations);
        Box::pin(async move {
            let found = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let addrs: reqwest::dns::Addrs = Box::new(usable(found, &destinations)?.into_iter());
            Ok(addrs)
        })
    }
}

/// The resolved addresses a provider key may go to.
fn usable(
    found: impl Iterator<Item = std::net::SocketAddr>,
    destinations: &Destinations,
) -> Result<Vec<std::net::SocketAddr>, &'static str> {
    let kept: Vec<_> = found
        .filter(|addr| destinations.check_ip(addr.ip()).is_ok())
        .collect();
    if kept.is_empty() {
        Err("the host resolves only to addresses provider requests may not reach")
    } else {
        Ok(kept)
    }
}

/// What an upstream answered.
pub enum Reply {
    /// A whole JSON body (non-streaming), in OpenAI's shape, with the usage it reports.
    Json {
        /// The upstream's success status.
        status: u16,
        /// The whole body, already translated where the provider speaks another format.
        body: Bytes,
        /// `None` when the upstream reported no usage.
        usage: Option<Usage>,
    },
    /// A server-sent event stream: the first events of the answer, already received, and the
    /// rest as [`Chunk`]s.
    Stream {
        /// The answer's first events, on whose arrival the chain committed to this target.
        first: Bytes,
        /// The rest of the answer, up to [`Chunk::Done`] or an error.
        rest: BoxStream<'static, Result<Chunk, ProviderError>>,
    },
}

/// What a provider's stream yields after its first events, in OpenAI's chat chunk shape. The
/// adapter never writes the end marker: the gateway does, after any usage chunk of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// Whole server-sent events to forward as they are.
    Events(Bytes),
    /// What the upstream reported the answer used. When the client asked for the usage chunk,
    /// its event came as `Events` before this.
    Usage(Usage),
    /// The upstream ended the answer as its provider ends a complete one (OpenAI's
    /// `data: [DONE]`, Anthropic's `message_stop`, Gemini's last candidate).
    Done,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Json { status, body, .. } => {
                write!(f, "Json({status}, {} bytes)", body.len())
            }
            Reply::Stream { first, .. } => write!(f, "Stream(first {} bytes)", first.len()),
        }
    }
}

/// How long and how much an attempt may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Until a whole body, or a stream's first chunk of the answer.
    pub attempt: Duration,
    /// Between two pieces of a stream after its first.
    pub idle: Duration,
    /// A stream from its start to its end.
    pub total: Duration,
    /// The largest whole body read.
    pub max_body: usize,
    /// Gateways the client's request already went through ([`HOPS_HEADER`]); an upstream
    /// request says one more.
    pub hops: u32,
}

/// How many Portcullis gateways a request went through: set on every upstream request, so a
/// base URL that points back at a gateway ends after [`MAX_HOPS`] instead of looping (AV-4).
pub const HOPS_HEADER: &str = "x-portcullis-hops";
/// Most gateways a request may pass through; one more is refused with 508.
pub const MAX_HOPS: u32 = 3;

impl Limits {
    /// `attempt` as given; a stream may go quiet for a minute and last ten; bodies up to
    /// 16 MiB.
    pub fn new(attempt: Duration) -> Self {
        Self {
            attempt,
            idle: Duration::from_secs(60),
            total: Duration::from_secs(600),
            max_body: 16 * 1024 * 1024,
            hops: 0,
        }
    }
}

/// A served request: which target answered after how many attempts.
#[derive(Debug)]
pub struct Served {
    /// The label of the target that answered.
    pub target: String,
    /// The target's place in the chain it was served from.
    pub index: usize,
    /// Attempts made in all, this one and retries included.
    pub attempts: u32,
    /// The kinds of the attempts that failed before this one (`ProviderError::kind`).
    pub failed: Vec<&'static str>,
    /// What the target answered: a whole body, or a stream already begun.
    pub reply: Reply,
}

/// Every target failed (or the request was refused by one as the caller's fault).
#[derive(Debug)]
pub struct ChainFailure {
    /// The error to answer with: the last one, or `BudgetSpent` when the budget ended the chain.
    pub last: ProviderError,
    /// Attempts made in all, retries included; 0 when every circuit was open.
    pub attempts: u32,
    /// Each failed attempt by target label, for logs and metrics.
    pub failures: Vec<(String, ProviderError)>,
}

/// Told by the chain of an attempt that may have been billed (it timed out after the upstream
/// took the request): the caller records that attempt at its worst case and, when `more`
/// targets may follow, says whether another attempt may be made. A budget holder reserves
/// anew here and refuses when it cannot: a request then never spends past its cap, however
/// many targets it tries.
pub trait Attempts: Send {
    /// Records attempt `index` at its worst case; with `more`, returns whether the chain may go on.
    fn billed(&mut self, index: usize, more: bool) -> BoxFuture<'_, bool>;
}

/// No budget to hold: every attempt may be made.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unbudgeted;

impl Attempts for Unbudgeted {
    fn billed(&mut self, _index: usize, _more: bool) -> BoxFuture<'_, bool> {
        Box::pin(std::future::ready(true))
    }
}

const RETRY_BACKOFF_MS: u64 = 25;

fn jitter_ms() -> u64 {
    let mut byte = [0u8; 1];
    match portcullis_core::token::random_bytes(&mut byte) {
        Ok(()) => u64::from(byte[0] % 25),
        Err(_) => 0,
    }
}

/// What is asked of the upstream, in OpenAI's wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `client_usage`: the client asked for the stream's usage chunk, so it is passed on (the
    /// adapter reports usage as [`Chunk::Usage`] either way).
    Chat {
        /// Whether the client asked for a server-sent event stream.
        stream: bool,
        /// Whether the client asked for the usage chunk (`stream_options.include_usage`).
        client_usage: bool,
    },
    /// An embeddings request; never streamed.
    Embeddings,
}

impl Operation {
    /// Whether the answer comes as a server-sent event stream.
    pub fn streams(self) -> bool {
        matches!(self, Operation::Chat { stream: true, .. })
    }
}

async fn attempt(
    target: &Target,
    body: &Map<String, Value>,
    operation: Operation,
    limits: &Limits,
) -> Result<Reply, ProviderError> {
    let provider = &target.provider;
    // The client's own request is for providers that speak its format only.
    let stripped;
    let body = match Native::carried_by(body) {
        Some(native) if !provider.speaks(native) => {
            let mut without = body.clone();
            without.remove(native.key());
            stripped = without;
            &stripped
        }
        _ => body,
    };
    match operation {
        Operation::Chat {
            stream: false,
            client_usage: _,
        } => provider.complete(target, body, limits).await,
        Operation::Chat {
            stream: true,
            client_usage,
        } => provider.stream(target, body, client_usage, limits).await,
        Operation::Embeddings => provider.embed(target, body, limits).await,
    }
}

/// Serves an OpenAI-shaped chat request through `targets` in order, with no budget to hold.
pub async fn serve_chat(
    upstreams: &Upstreams,
    targets: &[Target],
    body: &Map<String, Value>,
    stream: bool,
    timeout: Duration,
) -> Result<Served, ChainFailure> {
    let operation = Operation::Chat {
        stream,
        client_usage: wants_usage(body),
    };
    let limits = Limits::new(timeout);
    let targets: Vec<&Target> = targets.iter().collect();
    serve(
        upstreams,
        &targets,
        body,
        operation,
        &limits,
        &mut Unbudgeted,
    )
    .await
}

/// Serves an OpenAI-shaped request through `targets` in order. After an attempt that may have
/// been billed, `budget` decides whether the chain goes on.
pub async fn serve(
    upstreams: &Upstreams,
    targets: &[&Target],
    body: &Map<String, Value>,
    operation: Operation,
    limits: &Limits,
    budget: &mut dyn Attempts,
) -> Result<Served, ChainFailure> {
    let mut failures = Vec::new();
    let mut attempts = 0u32;
    for (index, target) in targets.iter().enumerate() {
        if !upstreams.breakers.allow(&target.circuit) {
            tracing::debug!(target = %target.label, "circuit open: skipped");
            continue;
        }
        for try_number in 0..2 {
            attempts += 1;
            let span = tracing::info_span!(
                "upstream.attempt",
                target = %target.label,
                attempt = attempts,
                outcome = tracing::field::Empty,
            );
            let outcome = attempt(target, body, operation, limits)
                .instrument(span.clone())
                .await;
            span.record(
                "outcome",
                outcome.as_ref().map_or_else(|e| e.kind(), |_| "ok"),
            );
            match outcome {
                Ok(reply) => {
                    upstreams.breakers.succeeded(&target.circuit);
                    return Ok(Served {
                        target: target.label.clone(),
                        index,
                        attempts,
                        failed: failures
                            .iter()
                            .map(|(_, e): &(String, ProviderError)| e.kind())
                            .collect(),
                        reply,
                    });
                }
                Err(error) => {
                    tracing::info!(target = %target.label, error = %error.summary(), "upstream attempt failed");
                    if !error.should_fall_back() {
                        failures.push((target.label.clone(), error.clone()));
                        return Err(ChainFailure {
                            last: error,
                            attempts,
                            failures,
                        });
                    }
                    upstreams.breakers.failed(&target.circuit);
                    let retry = try_number == 0
                        && error.retry_same_target()
                        && upstreams.breakers.allow(&target.circuit);
                    let billed = error.may_have_been_billed();
                    failures.push((target.label.clone(), error.clone()));
                    let more = index + 1 < targets.len();
                    if billed && !budget.billed(index, more).await && more {
                        return Err(ChainFailure {
                            last: ProviderError::BudgetSpent,
                            attempts,
                            failures,
                        });
                    }
                    if !retry {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS + jitter_ms())).await;
                }
            }
        }
    }
    let last = failures
        .last()
        .map_or(ProviderError::Connect, |(_, error)| error.clone());
    Err(ChainFailure {
        last,
        attempts,
        failures,
    })
}

/// Orders a route's targets for one request: the first by weighted chance (`draw` is a
/// uniform random number), the others after it in their declared order.
pub fn weighted_first(targets: &mut [Target], draw: u32) {
    let weights: Vec<u32> = targets.iter().map(|t| t.weight).collect();
    if let Some(chosen) = weighted_index(&weights, draw) {
        targets[..=chosen].rotate_right(1);
    }
}

/// The index `draw` (a uniform random number) picks from `weights` (each at least 1), or
/// `None` when there is nothing to choose between.
pub fn weighted_index(weights: &[u32], draw: u32) -> Option<usize> {
    let total: u64 = weights.iter().map(|w| u64::from((*w).max(1))).sum();
    if weights.len() < 2 || total == 0 {
        return None;
    }
    let mut point = u64::from(draw) % total;
    for (index, weight) in weights.iter().enumerate() {
        let weight = u64::from((*weight).max(1));
        if point < weight {
            return Some(index);
        }
        point -= weight;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::MockProvider;
    use serde_json::json;

    fn upstreams() -> Upstreams {
        Upstreams::new(
            Duration::from_secs(1),
            Breakers::new(5, Duration::from_secs(30)),
            &Egress::default(),
        )
        .unwrap()
    }

    /// A mock of the trait that names itself, and speaks Messages or not.
    fn mock(speaks_messages: bool) -> MockProvider {
        let mut provider = MockProvider::new();
        provider.expect_name().return_const("mock");
        provider
            .expect_speaks()
            .returning(move |format| speaks_messages && format == Native::Messages);
        provider
    }

    fn served_by(label: &str, provider: MockProvider) -> Target {
        Target {
            label: label.to_owned(),
            circuit: label.to_owned(),
            provider: Arc::new(provider),
            base_url: None,
            api_key: String::from("sk-test").into(),
            model: format!("{label}-model"),
            weight: 1,
        }
    }

    fn answer() -> Result<Reply, ProviderError> {
        Ok(Reply::Json {
            status: 200,
            body: Bytes::from_static(b"{}"),
            usage: None,
        })
    }

    fn chat(stream: bool) -> Operation {
        Operation::Chat {
            stream,
            client_usage: false,
        }
    }

    fn request() -> Map<String, Value> {
        json!({"model": "alias", "messages": [{"role": "user", "content": "hi"}]})
            .as_object()
            .cloned()
            .unwrap()
    }

    /// Counts the chain's questions, and answers `allow` to each.
    struct Ledger {
        asked: Vec<(usize, bool)>,
        allow: bool,
    }

    impl Attempts for Ledger {
        fn billed(&mut self, index: usize, more: bool) -> BoxFuture<'_, bool> {
            self.asked.push((index, more));
            Box::pin(std::future::ready(self.allow))
        }
    }

    async fn run(
        targets: &[Target],
        operation: Operation,
        body: &Map<String, Value>,
        budget: &mut dyn Attempts,
    ) -> Result<Served, ChainFailure> {
        let targets: Vec<&Target> = targets.iter().collect();
        let limits = Limits::new(Duration::from_secs(1));
        serve(&upstreams(), &targets, body, operation, &limits, budget).await
    }

    #[tokio::test]
    async fn av_1_a_refused_connection_is_retried_once_then_the_next_target_serves() {
        let mut first = mock(false);
        first
            .expect_complete()
            .times(2)
            .returning(|_, _, _| Err(ProviderError::Connect));
        let mut second = mock(false);
        second
            .expect_complete()
            .times(1)
            .withf(|target, body, _| target.model == "b-model" && body.contains_key("messages"))
            .returning(|_, _, _| answer());
        let targets = [served_by("a", first), served_by("b", second)];
        let served = run(&targets, chat(false), &request(), &mut Unbudgeted)
            .await
            .unwrap();
        assert_eq!((served.target.as_str(), served.index), ("b", 1));
        assert_eq!(served.attempts, 3);
        assert_eq!(served.failed, ["connect", "connect"]);
    }

    #[tokio::test]
    async fn av_1_a_client_error_ends_the_chain_without_the_next_target() {
        let mut first = mock(false);
        first.expect_complete().times(1).returning(|_, _, _| {
            Err(ProviderError::Status {
                status: 400,
                message: "bad".into(),
            })
        });
        let mut second = mock(false);
        second.expect_complete().times(0);
        let targets = [served_by("a", first), served_by("b", second)];
        let failure = run(&targets, chat(false), &request(), &mut Unbudgeted)
            .await
            .unwrap_err();
        assert!(matches!(
            failure.last,
            ProviderError::Status { status: 400, .. }
        ));
        assert_eq!(failure.attempts, 1);
    }

    #[tokio::test]
    async fn av_2_an_attempt_that_may_have_been_billed_asks_the_budget_before_the_next() {
        let timed_out = || {
            let mut first = mock(false);
            first
                .expect_complete()
                .times(1)
                .returning(|_, _, _| Err(ProviderError::Timeout));
            first
        };
        // Refused: the next target is never called, and the chain says why.
        let mut never = mock(false);
        never.expect_complete().times(0);
        let mut spent = Ledger {
            asked: Vec::new(),
            allow: false,
        };
        let targets = [served_by("a", timed_out()), served_by("b", never)];
        let failure = run(&targets, chat(false), &request(), &mut spent)
            .await
            .unwrap_err();
        assert!(matches!(failure.last, ProviderError::BudgetSpent));
        assert_eq!(spent.asked, [(0, true)]);
        // Allowed: the next target serves.
        let mut next = mock(false);
        next.expect_complete()
            .times(1)
            .returning(|_, _, _| answer());
        let mut room = Ledger {
            asked: Vec::new(),
            allow: true,
        };
        let targets = [served_by("a", timed_out()), served_by("b", next)];
        let served = run(&targets, chat(false), &request(), &mut room)
            .await
            .unwrap();
        assert_eq!(served.target, "b");
        assert_eq!(room.asked, [(0, true)]);
    }

    #[tokio::test]
    async fn each_operation_reaches_its_own_method_and_only_messages_providers_see_the_native_copy()
    {
        let mut body = request();
        body.insert(crate::anthropic::NATIVE.to_owned(), json!({"body": {}}));
        let mut plain = mock(false);
        plain
            .expect_stream()
            .times(1)
            .withf(|_, body, client_usage, _| {
                !body.contains_key(crate::anthropic::NATIVE) && *client_usage
            })
            .returning(|_, _, _, _| {
                Ok(Reply::Stream {
                    first: Bytes::new(),
                    rest: Box::pin(futures_util::stream::empty()),
                })
            });
        let streamed = Operation::Chat {
            stream: true,
            client_usage: true,
        };
        let targets = [served_by("plain", plain)];
        run(&targets, streamed, &body, &mut Unbudgeted)
            .await
            .unwrap();

        let mut messages = mock(true);
        messages
            .expect_complete()
            .times(1)
            .withf(|_, body, _| body.contains_key(crate::anthropic::NATIVE))
            .returning(|_, _, _| answer());
        let targets = [served_by("messages", messages)];
        run(&targets, chat(false), &body, &mut Unbudgeted)
            .await
            .unwrap();

        let mut embeddings = mock(false);
        embeddings
            .expect_embed()
            .times(1)
            .returning(|_, _, _| answer());
        embeddings.expect_complete().times(0);
        let targets = [served_by("embeddings", embeddings)];
        run(&targets, Operation::Embeddings, &request(), &mut Unbudgeted)
            .await
            .unwrap();
    }

    fn target(label: &str, weight: u32) -> Target {
        let upstreams = Upstreams::new(
            Duration::from_secs(1),
            Breakers::new(5, Duration::from_secs(1)),
            &Egress::default(),
        )
        .unwrap();
        Target {
            label: label.to_owned(),
            circuit: label.to_owned(),
            provider: upstreams.provider(ProviderKind::Mock),
            base_url: None,
            api_key: String::new().into(),
            model: "mock".to_owned(),
            weight,
        }
    }

    #[test]
    fn av_4_names_resolving_to_metadata_or_private_addresses_are_refused() {
        let metadata: std::net::SocketAddr = "169.254.169.254:0".parse().unwrap();
        let private: std::net::SocketAddr = "10.0.0.8:0".parse().unwrap();
        let public: std::net::SocketAddr = "203.0.113.4:0".parse().unwrap();
        let none = Destinations::default();
        assert_eq!(
            usable([metadata, private, public].into_iter(), &none),
            Ok(vec![public])
        );
        assert!(usable([metadata, private].into_iter(), &none).is_err());
        let allowed = Destinations {
            allow_link_local: true,
            allow_private: vec!["10.0.0.0/8".parse().unwrap()],
            ..Destinations::default()
        };
        assert_eq!(
            usable([metadata, private].into_iter(), &allowed),
            Ok(vec![metadata, private])
        );
    }

    #[test]
    fn av_1_the_weighted_pick_leads_and_the_rest_keep_their_order() {
        let labels = |t: &[Target]| t.iter().map(|t| t.label.clone()).collect::<Vec<_>>();
        let mut targets = vec![target("a", 1), target("b", 3), target("c", 1)];
        weighted_first(&mut targets, 2);
        assert_eq!(labels(&targets), ["b", "a", "c"]);
        let mut targets = vec![target("a", 1), target("b", 3), target("c", 1)];
        weighted_first(&mut targets, 0);
        assert_eq!(labels(&targets), ["a", "b", "c"]);
        let mut targets = vec![target("a", 1), target("b", 3), target("c", 1)];
        weighted_first(&mut targets, 4);
        assert_eq!(labels(&targets), ["c", "a", "b"]);
    }
}
