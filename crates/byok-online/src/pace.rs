//! Pacing to the vault's published limits, and what a 429 costs.
//!
//! Key Vault counts, per vault and per 10 seconds, HSM-key creates and imports (10) apart
//! from every other HSM-key transaction (2,000 for RSA 2048 and EC, 500 for RSA 3072, 250
//! for RSA 4096, enforced on the weighted sum); a Managed HSM creates 1 key per second
//! (docs/azure-behaviour.md, 6a). A [`Pacer`] holds one bucket per class: a token is spent
//! before each request is sent (every try, the SDK's retries included) and comes back one
//! window (and a small margin) after it was spent, so no window of the vault's, fixed or
//! sliding, ever sees more than the limit from this client.
//!
//! Azure's 429 carries no Retry-After. The SDK's retry policy retries it; [`retry_options`]
//! gives it Microsoft's schedule (wait 1, 2, 4, 8, then 16 s, then give up), scaled like the
//! window, and [`PacePolicy`] counts the 429s seen for the report.

use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{
    Context, ExponentialRetryOptions, Method, Request, RetryOptions, StatusCode,
};
use byok_core::VaultUrl;
use byok_core::kid::VaultKind;
use byok_core::target::KeyKind;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Key Vault's throttling window.
pub const AZURE_WINDOW: Duration = Duration::from_secs(10);

/// Key Vault: HSM-key creates and imports per window.
const KV_CREATE: u32 = 10;
/// Key Vault: other HSM-key transactions per window, in RSA-2048 units.
const KV_OTHER: u32 = 2000;
/// Managed HSM: creates per second; other transactions per second (the slowest one, RSA
/// sign, so that any mix stays under every per-operation limit).
const MHSM_CREATE: u32 = 1;
const MHSM_OTHER: u32 = 160;

/// What a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A key create or import.
    Create,
    /// Anything else, weighted by the key's type (RSA 2048 and EC 1, RSA 3072 4, RSA 4096 8).
    Other { weight: u32 },
}

/// The weight of one transaction on a key of `kind`, in RSA-2048 units (2,000 / its limit).
pub fn weight(kind: KeyKind) -> u32 {
    match kind {
        KeyKind::Rsa { bits } if bits > 3072 => 8,
        KeyKind::Rsa { bits } if bits > 2048 => 4,
        _ => 1,
    }
}

/// A key whose type is not known yet weighs as an RSA 4096 key (the default KEK).
const UNKNOWN_WEIGHT: u32 = 8;

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

/// The buckets of one vault, shared by every request of a batch.
#[derive(Debug)]
pub struct Pacer {
    create: Mutex<Bucket>,
    other: Mutex<Bucket>,
    /// The window asked for over Azure's 10 s: scales the 429 backoff too.
    ratio: f64,
    /// Each key name's weight, from the manifest.
    weights: Mutex<HashMap<String, u32>>,
    throttled: AtomicUsize,
}

impl Pacer {
    /// The limits of `vault`'s kind, over `window` (Azure's is [`AZURE_WINDOW`]; tests use
    /// a shorter one, as the emulator's `--throttle-window-ms`).
    pub fn for_vault(vault: &VaultUrl, window: Duration) -> Self {
        let ratio = window.as_secs_f64() / AZURE_WINDOW.as_secs_f64();
        // Tokens come back a little late: requests do not arrive at the vault exactly
        // as far apart as they left.
        let margin = |w: Duration| w + w / 50;
        let (create, other) = match vault.kind() {
            VaultKind::ManagedHsm => {
                let second = margin(window / 10);
                (
                    Bucket::new(MHSM_CREATE, second),
                    Bucket::new(MHSM_OTHER, second),
                )
            }
            _ => (
                Bucket::new(KV_CREATE, margin(window)),
                Bucket::new(KV_OTHER, margin(window)),
            ),
        };
        Self {
            create: Mutex::new(create),
            other: Mutex::new(other),
            ratio,
            weights: Mutex::new(HashMap::new()),
            throttled: AtomicUsize::new(0),
        }
    }

    /// Records what a key holds, so its transactions weigh what the vault counts.
    pub fn learn(&self, name: &str, kind: KeyKind) {
        self.weights
            .lock()
            .expect("weights")
            .insert(name.to_string(), weight(kind));
    }

    /// Waits until `class` may be sent, and spends it.
    pub async fn take(&self, class: Class) {
        let (bucket, cost) = match class {
            Class::Create => (&self.create, 1),
            Class::Other { weight } => (&self.other, weight),
        };
        loop {
            let wait = bucket
                .lock()
                .expect("bucket")
                .try_take(Instant::now(), cost);
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
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match (method, segments.as_slice()) {
            (Method::Put, ["keys", _]) => Class::Create,
            (Method::Post, ["keys", _, "create"]) => Class::Create,
            (_, ["keys", name, ..]) => Class::Other {
                weight: self
                    .weights
                    .lock()
                    .expect("weights")
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
        let mut b = Bucket::new(2000, W);
        // 248 RSA 4096 transactions (8 each) and 16 RSA 2048 ones fill it exactly.
        for _ in 0..248 {
            b.try_take(t0, 8).unwrap();
        }
        for _ in 0..16 {
            b.try_take(t0, 1).unwrap();
        }
        assert_eq!(b.try_take(t0, 1), Err(W));
        let kv = Pacer::for_vault(&VaultUrl::parse("https://v.vault.azure.net").unwrap(), W);
        kv.learn("ec", KeyKind::Ec { curve: Curve::P256 });
        kv.learn("r3", KeyKind::Rsa { bits: 3072 });
        assert_eq!(kv.classify(Method::Put, "/keys/ec"), Class::Create);
        assert_eq!(kv.classify(Method::Post, "/keys/KEK/create"), Class::Create);
        assert_eq!(
            kv.classify(Method::Get, "/keys/ec/"),
            Class::Other { weight: 1 }
        );
        assert_eq!(
            kv.classify(Method::Post, "/keys/r3/abc/sign"),
            Class::Other { weight: 4 }
        );
        assert_eq!(
            kv.classify(Method::Get, "/keys/KEK/v1"),
            Class::Other { weight: 8 }
        );
    }

    #[test]
    fn a_managed_hsm_creates_one_key_a_second() {
        let hsm = VaultUrl::parse("https://h.managedhsm.azure.net").unwrap();
        let pacer = Pacer::for_vault(&hsm, AZURE_WINDOW);
        let mut create = pacer.create.lock().unwrap();
        let t0 = Instant::now();
        create.try_take(t0, 1).unwrap();
        let wait = create.try_take(t0, 1).unwrap_err();
        assert!(wait >= Duration::from_secs(1) && wait < Duration::from_millis(1100));
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
