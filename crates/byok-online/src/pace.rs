//! Pacing to the vault's published limits, and what a 429 costs.
//!
//! The limits are [`byok_core::limits`], the one table kv-emulator's `--throttle azure`
//! enforces too (Learn "Azure Key Vault service limits", docs/azure-behaviour.md 6a). A Key
//! Vault counts, per vault and per 10 seconds, creates and imports in one budget (10 HSM-key
//! creates) and every other key transaction in ONE weighted budget, HSM and software keys
//! alike (2,000 HSM-key transactions on RSA 2048 and EC keys, 500 on RSA 3072, 250 on RSA
//! 4096, enforced on the weighted sum). A Managed HSM limits, per second, key creation (1),
//! deletion (10), purge (10) and reads (1,100), each apart, and not cryptographic operations.
//! A [`Pacer`] holds one bucket per budget: a token is spent before each request is sent
//! (every try, the SDK's retries included) and comes back one window (and a small margin)
//! after it was spent, so no window of the vault's, fixed or sliding, ever sees more than the
//! limit from this client.
//!
//! Azure's 429 carries no Retry-After. The SDK's retry policy retries it; [`retry_options`]
//! gives it Microsoft's schedule (wait 1, 2, 4, 8, then 16 s, then give up), scaled like the
//! window, and [`PacePolicy`] counts the 429s seen for the report.

use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{
    Context, ExponentialRetryOptions, Method, Request, RetryOptions, StatusCode,
};
use byok_cli_common::sync::lock;
use byok_core::VaultUrl;
use byok_core::kid::VaultKind;
use byok_core::limits::{self, MhsmOperation};
use byok_core::target::KeyKind;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Key Vault's throttling window.
pub const AZURE_WINDOW: Duration = Duration::from_secs(10);

/// What a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A key create or import (on a Key Vault: an HSM key's, this tool's only kind).
    Create,
    /// Anything else on a Key Vault, weighted by the key's type ([`weight`]).
    Other { weight: u32 },
    /// A Managed HSM operation its limits count.
    Mhsm(MhsmOperation),
    /// Not limited (a Managed HSM's cryptographic operations, a recovery).
    Free,
}

/// The weight of one transaction on an HSM key of `kind`, in the vault's units (4,000 / the
/// table's limit: RSA 2048 and EC 2, RSA 3072 8, RSA 4096 16).
pub fn weight(kind: KeyKind) -> u32 {
    limits::kv_other_cost(kind, true)
}

/// A key whose type is not known yet weighs as an RSA 4096 key (the default KEK).
const UNKNOWN_WEIGHT: u32 = 16;

/// At most `limit` units spent in any `window`: each spending comes back `window` later.
#[derive(Debug)]
pub struct Bucket {
    limit: u32,
    window: Duration,
    spent: VecDeque<(Instant, u32)>,
    in_use: u32,
}

impl Bucket {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit: limit.max(1),
            window,
            spent: VecDeque::new(),
            in_use: 0,
        }
    }

    /// Spends `cost` at `now`, or says how long to wait before it can be.
    pub fn try_take(&mut self, now: Instant, cost: u32) -> Result<(), Duration> {
        let cost = cost.clamp(1, self.limit);
        while let Some(&(t, c)) = self.spent.front() {
            if now.saturating_duration_since(t) >= self.window {
                self.spent.pop_front();
                self.in_use -= c;
            } else {
                break;
            }
        }
        if self.in_use + cost <= self.limit {
            self.spent.push_back((now, cost));
            self.in_use += cost;
            return Ok(());
        }
        // The earliest time enough has come back.
        let mut in_use = self.in_use;
        for &(t, c) in &self.spent {
            in_use -= c;
            if in_use + cost <= self.limit {
                return Err((t + self.window).saturating_duration_since(now));
            }
        }
        unreachable!("cost is at most the limit")
    }
}

/// A vault's buckets: a Key Vault's two weighted ones, or a Managed HSM's per operation.
#[derive(Debug)]
enum Buckets {
    Vault {
        create: Mutex<Bucket>,
        other: Mutex<Bucket>,
    },
    ManagedHsm {
        /// Create, delete, purge, get: in [`MHSM_OPERATIONS`]' order.
        ops: [Mutex<Bucket>; 4],
    },
}

const MHSM_OPERATIONS: [MhsmOperation; 4] = [
    MhsmOperation::Create,
    MhsmOperation::Delete,
    MhsmOperation::Purge,
    MhsmOperation::Get,
];

/// The buckets of one vault, shared by every request of a batch.
#[derive(Debug)]
pub struct Pacer {
    buckets: Buckets,
    /// The window asked for over Azure's 10 s: scales the 429 backoff too.
    ratio: f64,
    /// Each key name's weight, from the manifest.
    weights: Mutex<HashMap<String, u32>>,
    throttled: AtomicUsize,
}

impl Pacer {
    /// The limits of `vault`'s kind, over `window` (Azure's is [`AZURE_WINDOW`]; tests use
    /// a shorter one, as the emulator's `--throttle-window-ms`; a Managed HSM's second is a
    /// tenth of it).
    pub fn for_vault(vault: &VaultUrl, window: Duration) -> Self {
        let ratio = window.as_secs_f64() / AZURE_WINDOW.as_secs_f64();
        // Tokens come back a little late: requests do not arrive at the vault exactly
        // as far apart as they left.
        let margin = |w: Duration| w + w / 50;
        let buckets = match vault.kind() {
            VaultKind::ManagedHsm => {
                let second = margin(window / 10);
                Buckets::ManagedHsm {
                    ops: MHSM_OPERATIONS
                        .map(|op| Mutex::new(Bucket::new(limits::mhsm_per_second(op), second))),
                }
            }
            _ => Buckets::Vault {
                create: Mutex::new(Bucket::new(limits::KV_CREATE_UNITS, margin(window))),
                other: Mutex::new(Bucket::new(limits::KV_OTHER_UNITS, margin(window))),
            },
        };
        Self {
            buckets,
            ratio,
            weights: Mutex::new(HashMap::new()),
            throttled: AtomicUsize::new(0),
        }
    }

    /// Records what a key holds, so its transactions weigh what the vault counts.
    pub fn learn(&self, name: &str, kind: KeyKind) {
        lock(&self.weights, "pacing weights").insert(name.to_string(), weight(kind));
    }

    /// The bucket `class` spends from, and how much; None when it is not limited.
    fn bucket(&self, class: Class) -> Option<(&Mutex<Bucket>, u32)> {
        match (&self.buckets, class) {
            (Buckets::Vault { create, .. }, Class::Create) => {
                Some((create, limits::kv_create_cost(true)))
            }
            (Buckets::Vault { other, .. }, Class::Other { weight }) => Some((other, weight)),
            (Buckets::ManagedHsm { ops }, Class::Mhsm(op)) => {
                let i = MHSM_OPERATIONS.iter().position(|o| *o == op)?;
                Some((&ops[i], 1))
            }
            _ => None,
        }
    }

    /// Waits until `class` may be sent, and spends it.
    pub async fn take(&self, class: Class) {
        let Some((bucket, cost)) = self.bucket(class) else {
            return;
        };
        loop {
            let wait = lock(bucket, "pacing bucket").try_take(Instant::now(), cost);
            match wait {
                Ok(()) => return,
                Err(d) => tokio::time::sleep(d).await,
            }
        }
    }

    /// How many 429s the vault answered.
    pub fn throttled(&self) -> usize {
        self.throttled.load(Ordering::Relaxed)
    }

    /// The class of a request, from its method and path.
    pub fn classify(&self, method: Method, path: &str) -> Class {
        let method_name = match method {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            _ => "",
        };
        if let Buckets::ManagedHsm { .. } = self.buckets {
            return limits::mhsm_operation(method_name, path).map_or(Class::Free, Class::Mhsm);
        }
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match (method_name, segments.as_slice()) {
            ("PUT", ["keys", _]) => Class::Create,
            ("POST", ["keys", _, "create"]) => Class::Create,
            (_, ["keys", name, ..]) => Class::Other {
                weight: lock(&self.weights, "pacing weights")
                    .get(*name)
                    .copied()
                    .unwrap_or(UNKNOWN_WEIGHT),
            },
            _ => Class::Other {
                weight: UNKNOWN_WEIGHT,
            },
        }
    }
}

/// The SDK's retry: Microsoft's 429 schedule (1, 2, 4, 8, 16 s, then the request fails),
/// the delays scaled as the vault's `window` (tests shorten it). The SDK waits
/// `initial_delay * 2^n` (plus up to 255 ms of jitter) before retry n (from 1), and retries
/// 408, 429 and 5xx the same way.
pub fn retry_options(window: Option<Duration>) -> RetryOptions {
    let ratio = window.map_or(1.0, |w| w.as_secs_f64() / AZURE_WINDOW.as_secs_f64());
    RetryOptions::exponential(ExponentialRetryOptions {
        initial_delay: azure_core::time::Duration::milliseconds(initial_delay_ms(ratio)),
        max_retries: MAX_RETRIES,
        max_total_elapsed: azure_core::time::Duration::seconds(60),
        max_delay: azure_core::time::Duration::seconds(30),
    })
}

/// The SDK's first delay is twice this: 500 ms gives 1 s, then 2, 4, 8 and 16 s.
fn initial_delay_ms(ratio: f64) -> i64 {
    (500.0 * ratio).round().max(1.0) as i64
}

/// The waits before each retry, without the SDK's jitter: 1, 2, 4, 8, 16 s at Azure's window.
pub fn backoff_schedule(pacer: Option<&Pacer>) -> Vec<Duration> {
    let first = initial_delay_ms(pacer.map_or(1.0, |p| p.ratio)) as u64;
    (1..=MAX_RETRIES)
        .map(|n| Duration::from_millis(first << n))
        .collect()
}

/// Retries after a 429 (or a 5xx) before the request fails.
pub const MAX_RETRIES: u32 = 5;

/// The per-try policies for a paced client: none without a pacer.
pub fn policies(pacer: Option<&Arc<Pacer>>) -> Vec<Arc<dyn Policy>> {
    pacer
        .map(|p| vec![Arc::new(PacePolicy { pacer: p.clone() }) as Arc<dyn Policy>])
        .unwrap_or_default()
}

/// Takes the request's tokens before each try and counts the 429s.
#[derive(Debug)]
pub struct PacePolicy {
    pacer: Arc<Pacer>,
}

// The trait's own signature elides Context's lifetime; async_trait needs it the same.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl Policy for PacePolicy {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        let class = self.pacer.classify(request.method(), request.url().path());
        self.pacer.take(class).await;
        let response = next[0].send(ctx, request, &next[1..]).await;
        if let Ok(r) = &response
            && r.status() == StatusCode::TooManyRequests
        {
            self.pacer.throttled.fetch_add(1, Ordering::Relaxed);
            let id = r
                .headers()
                .get_optional_str(&azure_core::http::headers::HeaderName::from_static(
                    "x-ms-request-id",
                ))
                .unwrap_or("none");
            tracing::warn!(
                "429 from the vault on {} {} (request id {id}): backing off",
                request.method(),
                request.url().path()
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use byok_core::target::Curve;

    const W: Duration = Duration::from_secs(10);

    #[test]
    fn ten_creates_then_the_next_when_the_first_comes_back() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10, W);
        for i in 0..10 {
            assert_eq!(b.try_take(t0 + Duration::from_millis(i * 100), 1), Ok(()));
        }
        // The 11th waits for the first token: spent at t0, back at t0 + 10 s.
        let at = t0 + Duration::from_secs(3);
        assert_eq!(b.try_take(at, 1), Err(Duration::from_secs(7)));
        assert_eq!(b.try_take(t0 + W, 1), Ok(()));
        // The second came back 100 ms later.
        assert_eq!(b.try_take(t0 + W, 1), Err(Duration::from_millis(100)));
        assert_eq!(b.try_take(t0 + W + Duration::from_millis(100), 1), Ok(()));
    }

    #[test]
    fn no_window_holds_more_than_the_limit() {
        // 200 requests as fast as the bucket allows, on a fake clock: count each window.
        let t0 = Instant::now();
        let mut b = Bucket::new(10, W);
        let (mut now, mut sent) = (t0, Vec::new());
        while sent.len() < 200 {
            match b.try_take(now, 1) {
                Ok(()) => sent.push(now),
                Err(d) => now += d,
            }
        }
        for (i, &start) in sent.iter().enumerate() {
            let in_window = sent[i..].iter().filter(|&&t| t - start < W).count();
            assert!(
                in_window <= 10,
                "{in_window} in the window from request {i}"
            );
        }
        // ceil(200 / 10) - 1 windows: the least time the limit allows.
        assert_eq!(*sent.last().unwrap() - t0, 19 * W);
    }

    #[test]
    fn weights_add_up_on_the_sum() {
        let t0 = Instant::now();
        let mut b = Bucket::new(limits::KV_OTHER_UNITS, W);
        // 248 RSA 4096 HSM-key transactions and 16 RSA 2048 ones fill it exactly (the page's
        // example).
        for _ in 0..248 {
            b.try_take(t0, weight(KeyKind::Rsa { bits: 4096 })).unwrap();
        }
        for _ in 0..16 {
            b.try_take(t0, weight(KeyKind::Rsa { bits: 2048 })).unwrap();
        }
        assert_eq!(b.try_take(t0, 1), Err(W));
        let kv = Pacer::for_vault(&VaultUrl::parse("https://v.vault.azure.net").unwrap(), W);
        kv.learn("ec", KeyKind::Ec { curve: Curve::P256 });
        kv.learn("r3", KeyKind::Rsa { bits: 3072 });
        assert_eq!(kv.classify(Method::Put, "/keys/ec"), Class::Create);
        assert_eq!(kv.classify(Method::Post, "/keys/KEK/create"), Class::Create);
        assert_eq!(
            kv.classify(Method::Get, "/keys/ec/"),
            Class::Other { weight: 2 }
        );
        assert_eq!(
            kv.classify(Method::Post, "/keys/r3/abc/sign"),
            Class::Other { weight: 8 }
        );
        assert_eq!(
            kv.classify(Method::Get, "/keys/KEK/v1"),
            Class::Other { weight: 16 }
        );
    }

    #[test]
    fn a_managed_hsm_paces_each_operation_per_second_and_not_crypto() {
        let hsm = VaultUrl::parse("https://h.managedhsm.azure.net").unwrap();
        let pacer = Pacer::for_vault(&hsm, AZURE_WINDOW);
        assert_eq!(
            pacer.classify(Method::Put, "/keys/k"),
            Class::Mhsm(MhsmOperation::Create)
        );
        assert_eq!(
            pacer.classify(Method::Delete, "/deletedkeys/k"),
            Class::Mhsm(MhsmOperation::Purge)
        );
        assert_eq!(pacer.classify(Method::Post, "/keys/k/v/sign"), Class::Free);
        let (create, cost) = pacer.bucket(Class::Mhsm(MhsmOperation::Create)).unwrap();
        let mut create = create.lock().unwrap();
        let t0 = Instant::now();
        create.try_take(t0, cost).unwrap();
        let wait = create.try_take(t0, cost).unwrap_err();
        assert!(wait >= Duration::from_secs(1) && wait < Duration::from_millis(1100));
        drop(create);
        let (get, _) = pacer.bucket(Class::Mhsm(MhsmOperation::Get)).unwrap();
        let mut get = get.lock().unwrap();
        for _ in 0..1100 {
            get.try_take(t0, 1).unwrap();
        }
        assert!(get.try_take(t0, 1).is_err());
        assert!(pacer.bucket(Class::Free).is_none());
    }

    #[test]
    fn the_retry_schedule_is_microsofts_scaled_like_the_window() {
        let url = VaultUrl::parse("https://v.vault.azure.net").unwrap();
        let secs = |p: Option<&Pacer>| {
            backoff_schedule(p)
                .iter()
                .map(Duration::as_millis)
                .collect::<Vec<_>>()
        };
        assert_eq!(secs(None), [1000, 2000, 4000, 8000, 16000]);
        let fast = Pacer::for_vault(&url, Duration::from_millis(1000));
        assert_eq!(secs(Some(&fast)), [100, 200, 400, 800, 1600]);
    }
}
