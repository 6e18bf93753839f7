//! Reserve and settle (AV-2) from per-process budget leases.
//!
//! Before a request leaves, its worst-case cost (and one request, and its worst-case tokens,
//! for a key's rate limits) is set aside from what this process holds of each limit. Only
//! when a lease runs short does the process go to PostgreSQL, which grants a slice of every
//! short limit at once or refuses, never past a cap: `cap >= spent + live leases`. Settling
//! gives back the difference at once, in memory; the ledger row, the counters and the lease
//! are written by the batching writer (`writer.rs`). A lease lives while its process renews
//! it; a dead process's leases expire, and with them its reservations.

mod writer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use portcullis_core::OrgId;
use portcullis_core::money::{Allowance, Period, Price, Usage, lease_slice};
pub use portcullis_policy::spend::PriceTable;
use portcullis_storage::Db;
use portcullis_storage::dataplane::{Budget, LiveKey};
use portcullis_storage::spend::{self as store, Charge, Counter, Scope, Settlement, Take, Want};
use uuid::Uuid;

use crate::background::Background;
use crate::error::ApiError;
pub use writer::WriterStats;

/// How spend behaves in this process.
#[derive(Debug, Clone)]
pub struct SpendOptions {
    /// How long a lease outlives its last renewal: a dead process's reservations are free
    /// again after this long.
    pub lease_ttl: Duration,
    pub prices: Arc<PriceTable>,
}

impl SpendOptions {
    pub fn new(prices: PriceTable) -> Self {
        Self {
            lease_ttl: Duration::from_secs(30),
            prices: Arc::new(prices),
        }
    }
}

/// What this process holds of one limit.
#[derive(Debug, Default)]
struct Book {
    lease_id: Option<Uuid>,
    allowance: Allowance,
    last_used: Option<Instant>,
    /// Past this the lease may have expired in PostgreSQL (its amount given to others): the
    /// process stops spending from it until a renewal or a new grant says otherwise.
    valid_until: Option<Instant>,
}

impl Book {
    /// Forgets a lease that may no longer be ours.
    fn expire_if_stale(&mut self, now: Instant) {
        if self.valid_until.is_some_and(|until| until <= now) {
            self.lease_id = None;
            self.allowance.remaining = 0;
            self.valid_until = None;
        }
    }
}

type Books = HashMap<(OrgId, Counter), Book>;

/// The spend engine of one process; cheap to share (`Arc`).
#[derive(Debug)]
pub struct Spend {
    db: Db,
    /// This process, as the holder of its leases.
    holder: Uuid,
    options: SpendOptions,
    books: Mutex<Books>,
    writer: writer::Handle,
}

/// One limit a request draws on, and how much.
#[derive(Debug, Clone, Copy)]
struct Draw {
    counter: Counter,
    cap: i64,
    amount: i64,
}

/// What a request holds until it settles. Dropped unsettled (the client left before an
/// upstream answered, or every upstream failed), it gives everything back.
#[derive(Debug)]
pub struct Reservation {
    spend: Arc<Spend>,
    pub entry_id: Uuid,
    org: OrgId,
    key: LiveKey,
    holds: Vec<(Counter, Option<Uuid>, i64)>,
    /// The worst case reserved: the prompt bound and the output the request may ask for.
    pub estimate: Usage,
    /// What the worst case costs at the ceiling price: what an unknown usage settles at.
    pub reserved_cost: i64,
    /// Set once the request may have reached an upstream: dropped unsettled from then on (the
    /// client left, the process stopped), it settles at its estimate instead of giving back.
    sent: Option<Sent>,
    settled: bool,
}

/// What a reservation's ledger row says if it must settle at its estimate on its own.
#[derive(Debug, Clone)]
struct Sent {
    request_id: String,
    model: String,
    priced: bool,
}

/// What the request actually used, for its settle.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub request_id: String,
    pub model: String,
    pub target: String,
    pub usage: Usage,
    /// What it cost; `None` for a target served unpriced.
    pub cost: Option<i64>,
    /// The provider reported no usage: `usage` and `cost` are the reservation's.
    pub estimated: bool,
}

fn locked(books: &Mutex<Books>) -> MutexGuard<'_, Books> {
    books
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn budget_counter(scope: Scope, id: Uuid, budget: &Budget, now: DateTime<Utc>) -> Counter {
    let period = budget.period;
    Counter {
        scope,
        scope_id: id,
        period_start: period.start(now),
    }
}

impl Spend {
    /// Starts the engine and its writer, lease renewal and housekeeping tasks.
    pub fn start(db: Db, options: SpendOptions, background: &Background) -> Arc<Self> {
        let writer = writer::Handle::spawn(db.clone(), background);
        let spend = Arc::new(Self {
            db,
            holder: Uuid::now_v7(),
            options,
            books: Mutex::new(HashMap::new()),
            writer,
        });
        background.spawn_loop(upkeep(Arc::downgrade(&spend)));
        spend
    }

    pub fn prices(&self) -> &PriceTable {
        &self.options.prices
    }

    pub fn writer_stats(&self) -> WriterStats {
        self.writer.stats()
    }

    /// How long after asking a lease is surely still live: well inside its TTL, so that clock
    /// drift and a slow round trip never let the process spend from an expired one.
    fn safe_lifetime(&self) -> Duration {
        self.options.lease_ttl * 3 / 4
    }

    fn ttl_ms(&self) -> i32 {
        i32::try_from(self.options.lease_ttl.as_millis()).unwrap_or(i32::MAX)
    }

    /// The limits `key` draws on for a request estimated at `cost` micro-dollars and
    /// `tokens` tokens.
    fn draws(key: &LiveKey, cost: i64, tokens: i64, now: DateTime<Utc>) -> Vec<Draw> {
        let limits = &key.limits;
        let mut draws = Vec::new();
        let mut budget = |scope, id, budget: &Option<Budget>| {
            if let Some(b) = budget {
                draws.push(Draw {
                    counter: budget_counter(scope, id, b, now),
                    cap: b.micro_usd,
                    amount: cost,
                });
            }
        };
        budget(Scope::Org, *key.org_id.as_uuid(), &limits.org);
        if let Some(team) = key.team_id {
            budget(Scope::Team, team, &limits.team);
        }
        budget(Scope::Key, *key.key_id.as_uuid(), &limits.key);
        let minute = Period::Minute.start(now);
        for (scope, cap, amount) in [
            (Scope::KeyRpm, limits.rpm, 1),
            (Scope::KeyTpm, limits.tpm, tokens),
        ] {
            if let Some(cap) = cap {
                draws.push(Draw {
                    counter: Counter {
                        scope,
                        scope_id: *key.key_id.as_uuid(),
                        period_start: minute,
                    },
                    cap,
                    amount,
                });
            }
        }
        draws
    }

    /// Reserves `estimate` at the `ceiling` price against every limit of `key`, all or
    /// nothing.
    pub async fn reserve(
        self: &Arc<Self>,
        key: &LiveKey,
        estimate: Usage,
        ceiling: Price,
    ) -> Result<Reservation, ApiError> {
        let cost = ceiling.cost(&estimate);
        let draws = Self::draws(key, cost, estimate.total_tokens(), Utc::now());
        let org = key.org_id;
        let mut holds = Vec::with_capacity(draws.len());
        // A grant may be taken by a concurrent request before this one uses it: ask again,
        // a few times, before calling the limit exhausted.
        for _ in 0..4 {
            let asked_at = Instant::now();
            let wants = {
                let mut books = locked(&self.books);
                for d in &draws {
                    if let Some(book) = books.get_mut(&(org, d.counter)) {
                        book.expire_if_stale(asked_at);
                    }
                }
                let wants: Vec<Want> = draws
                    .iter()
                    .filter_map(|d| {
                        let book = books.get(&(org, d.counter));
                        let remaining = book.map_or(0, |b| b.allowance.remaining);
                        (remaining < d.amount).then(|| {
                            let needed = d.amount - remaining;
                            Want {
                                counter: d.counter,
                                lease_id: book.and_then(|b| b.lease_id),
                                needed,
                                wanted: lease_slice(d.cap, needed),
                            }
                        })
                    })
                    .collect();
                if wants.is_empty() {
                    let now = Instant::now();
                    for d in &draws {
                        let book = books.entry((org, d.counter)).or_default();
                        book.allowance.reserve(d.amount);
                        book.last_used = Some(now);
                        holds.push((d.counter, book.lease_id, d.amount));
                    }
                    return Ok(Reservation {
                        spend: Arc::clone(self),
                        entry_id: Uuid::now_v7(),
                        org,
                        key: key.clone(),
                        holds,
                        estimate,
                        reserved_cost: cost,
                        sent: None,
                        settled: false,
                    });
                }
                wants
            };
            match store::take(&self.db, org, self.holder, self.ttl_ms(), &wants).await? {
                Take::Granted(grants) => {
                    let mut books = locked(&self.books);
                    let valid_until = asked_at + self.safe_lifetime();
                    for grant in grants {
                        let book = books.entry((org, grant.counter)).or_default();
                        book.valid_until = Some(valid_until);
                        book.last_used = Some(asked_at);
                        if book.lease_id == Some(grant.lease_id) {
                            book.allowance.grant(grant.amount);
                        } else {
                            // A new lease (or one this book lost track of): whatever was left
                            // of the old one is void or on its way back.
                            book.lease_id = Some(grant.lease_id);
                            book.allowance.remaining = grant.amount;
                        }
                    }
                }
                Take::Refused(counter) => return Err(refusal(counter)),
            }
        }
        Err(ApiError::Unavailable {
            retry_after_secs: 1,
        })
    }

    /// Gives back what a reservation holds beyond `actual` per limit; returns the charges.
    fn release(&self, reservation: &Reservation, actual: impl Fn(Scope) -> i64) -> Vec<Charge> {
        let mut books = locked(&self.books);
        reservation
            .holds
            .iter()
            .map(|(counter, lease_id, reserved)| {
                let amount = actual(counter.scope);
                if let Some(book) = books.get_mut(&(reservation.org, *counter)) {
                    if book.lease_id == *lease_id {
                        book.allowance.settle(*reserved, amount);
                    } else {
                        // Reserved from a lease that has since been replaced: its remainder
                        // went with it.
                        book.allowance.in_flight = (book.allowance.in_flight - reserved).max(0);
                    }
                }
                Charge {
                    counter: *counter,
                    lease_id: *lease_id,
                    amount,
                }
            })
            .collect()
    }

    /// Returns every lease of this process and waits until everything settled so far is
    /// written (graceful shutdown).
    pub async fn close(&self) {
        let leases: Vec<(OrgId, Uuid, i64)> = {
            let mut books = locked(&self.books);
            books
                .drain()
                .filter_map(|((org, _), book)| {
                    Some((org, book.lease_id?, book.allowance.remaining))
                })
                .collect()
        };
        for (org, lease, amount) in leases {
            self.writer.return_lease(org, lease, amount);
        }
        self.writer.flush().await;
    }

    /// Waits until everything settled so far is written.
    pub async fn flush(&self) {
        self.writer.flush().await;
    }
}

fn refusal(counter: Counter) -> ApiError {
    match counter.scope {
        Scope::KeyRpm | Scope::KeyTpm => {
            let what = if counter.scope == Scope::KeyRpm {
                "requests"
            } else {
                "tokens"
            };
            ApiError::RateLimited {
                retry_after_secs: Period::Minute.seconds_left(Utc::now()),
                message: format!("this key is past its {what} per minute; retry later"),
            }
        }
        scope => ApiError::PaymentRequired {
            code: "budget_exceeded",
            message: format!("the {} budget would be exceeded", scope.as_str()),
        },
    }
}

impl Reservation {
    /// The request is about to reach an upstream: from now on it may be billed whatever
    /// follows, so a drop without a settle records the estimate (target unknown).
    pub fn mark_sent(&mut self, request_id: &str, model: &str, priced: bool) {
        self.sent = Some(Sent {
            request_id: request_id.to_owned(),
            model: model.to_owned(),
            priced,
        });
    }

    /// Gives everything back: nothing was billed (a refused connection, an error status).
    pub fn release(mut self) {
        self.settled = true;
        let _returned = self.spend.release(&self, |_| 0);
    }

    /// Keeps the request's place under the key's requests-per-minute limit and gives the rest
    /// back, with no ledger row: a request that costs nothing (a token count). The place stays
    /// spent in this process's lease of the minute, which no other process can take either.
    pub fn keep_rate_place(mut self) {
        self.settled = true;
        let _kept = self
            .spend
            .release(&self, |scope| i64::from(scope == Scope::KeyRpm));
    }

    /// Settles at the worst case reserved, marked estimated: usage unknown (a stream the
    /// client left, an upstream that reported none, an attempt that timed out after the
    /// upstream took it) is never recorded below what the upstream may have billed.
    pub fn settle_at_estimate(
        self,
        request_id: String,
        model: String,
        target: String,
        priced: bool,
    ) -> i64 {
        let outcome = Outcome {
            request_id,
            model,
            target,
            usage: self.estimate,
            cost: priced.then_some(self.reserved_cost),
            estimated: true,
        };
        self.settle(outcome)
    }

    /// Settles to what the request used: the difference comes back at once, and the ledger
    /// row is queued for the writer. Returns the cost recorded.
    pub fn settle(mut self, outcome: Outcome) -> i64 {
        self.settled = true;
        let cost = outcome.cost.unwrap_or(0);
        let tokens = outcome.usage.total_tokens();
        let charges = self.spend.release(&self, |scope| match scope {
            Scope::KeyRpm => 1,
            Scope::KeyTpm => tokens,
            _ => cost,
        });
        let settlement = Settlement {
            entry_id: self.entry_id,
            org_id: self.org,
            occurred_at: Utc::now(),
            request_id: outcome.request_id,
            team_id: self.key.team_id,
            key_id: self.key.key_id,
            model: outcome.model,
            target: outcome.target,
            input_tokens: outcome.usage.input_tokens.max(0),
            output_tokens: outcome.usage.output_tokens.max(0),
            cached_input_tokens: outcome.usage.cached_input_tokens.max(0),
            cache_write_tokens: outcome.usage.cache_write_tokens.max(0),
            reasoning_tokens: outcome.usage.reasoning_tokens.max(0),
            cost_micro_usd: cost,
            priced: outcome.cost.is_some(),
            estimated: outcome.estimated,
            charges,
        };
        self.spend.writer.settle(settlement);
        cost
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        match self.sent.take() {
            // Dropped before anything left (a refusal before the upstream): nothing spent.
            None => {
                self.spend.release(self, |_| 0);
            }
            // Dropped after the request may have reached an upstream (the client left before
            // the answer): never recorded below what may have been billed.
            Some(sent) => {
                let taken = Reservation {
                    spend: Arc::clone(&self.spend),
                    entry_id: self.entry_id,
                    org: self.org,
                    key: self.key.clone(),
                    holds: std::mem::take(&mut self.holds),
                    estimate: self.estimate,
                    reserved_cost: self.reserved_cost,
                    sent: None,
                    settled: false,
                };
                self.settled = true;
                taken.settle_at_estimate(
                    sent.request_id,
                    sent.model,
                    "(the client left before an answer)".to_owned(),
                    sent.priced,
                );
            }
        }
    }
}

/// Renews this process's leases, returns those idle for a while (so that other processes may
/// have them), and runs the housekeeping sweep when no other process does. Ends when the
/// engine is dropped or shutdown begins.
async fn upkeep(spend: std::sync::Weak<Spend>) {
    let mut last_sweep = Instant::now();
    loop {
        let period = match spend.upgrade() {
            Some(s) => s.options.lease_ttl / 5,
            None => return,
        };
        tokio::time::sleep(period.max(Duration::from_millis(100))).await;
        let Some(spend) = spend.upgrade() else { return };
        spend.renew().await;
        if last_sweep.elapsed() >= Duration::from_secs(30) {
            last_sweep = Instant::now();
            match store::sweep(&spend.db).await {
                Ok(Some((leases, ledger))) if leases > 0 || ledger > 0 => {
                    tracing::info!(leases, ledger_rows = ledger, "spend housekeeping");
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "spend housekeeping failed"),
            }
        }
    }
}

impl Spend {
    async fn renew(&self) {
        let asked_at = Instant::now();
        let live = match store::renew(&self.db, self.holder, self.ttl_ms()).await {
            Ok(live) => live,
            Err(error) => {
                tracing::warn!(%error, "cannot renew budget leases");
                return;
            }
        };
        let idle = self.options.lease_ttl;
        let mut returned = Vec::new();
        {
            let mut books = locked(&self.books);
            books.retain(|(org, _), book| {
                let Some(lease) = book.lease_id else {
                    return book.allowance.in_flight > 0;
                };
                let granted_since = book.last_used.is_some_and(|at| at >= asked_at);
                if !live.contains(&lease) && !granted_since {
                    // Expired while this process lived (a long stall), or granted after the
                    // renewal looked: either way not known to be live, so not spent from. What
                    // it had left goes back: a lease granted meanwhile would otherwise hold
                    // its slice of the budget until it expires.
                    returned.push((*org, lease, book.allowance.remaining));
                    book.lease_id = None;
                    book.allowance.remaining = 0;
                    return book.allowance.in_flight > 0;
                }
                if live.contains(&lease) {
                    book.valid_until = Some(asked_at + self.safe_lifetime());
                }
                let unused = book.last_used.is_none_or(|at| at.elapsed() >= idle);
                if unused && book.allowance.in_flight == 0 {
                    returned.push((*org, lease, book.allowance.remaining));
                    return false;
                }
                true
            });
        }
        for (org, lease, amount) in returned {
            self.writer.return_lease(org, lease, amount);
        }
    }
}
