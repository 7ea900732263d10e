//! Throttling by Key Vault's and Managed HSM's published limits (`--throttle`), off by
//! default. The table is [`byok_core::limits`] (Learn "Azure Key Vault service limits",
//! docs/azure-behaviour.md 6a), which byok-online's pacing reads too.
//!
//! A vault (per 10 s window): ONE budget of 4,000 units for every key transaction that is not
//! a create, HSM and software keys alike ("only one of the following ... 4,000 RSA 2,048-bit
//! software-key GET transactions; 2,000 RSA 2,048-bit HSM-key GET transactions; 250 RSA
//! 4,096-bit HSM-key GET transactions; 248 ... and 16 ..."): a transaction costs 4,000 / its
//! limit (RSA 2048 or EC software key 1, HSM key 2; RSA 3072 4 / 8; RSA 4096 8 / 16). Creates
//! and imports share one budget of 20 units (software 1, HSM 2). A request that names no stored
//! key (a list, a missing key) costs what an RSA 2048 HSM-key transaction does (inferred: the
//! table does not say).
//!
//! A Managed HSM (`--throttle azure`, per second): Create Key 1 (imports too), Delete Key 10,
//! Purge Key 10, Get Key Information 1,100, each counted apart; nothing else ("Managed HSM does
//! not throttle on cryptographic operation transactions", scaling guidance).
//!
//! `--throttle create=N,other=M` replaces a vault's limits (for tests, with the same weights):
//! N HSM-key creates and M units of HSM-key transactions (an RSA 2048 HSM-key GET is 1 of
//! them) per window, software keys costing half; a Managed HSM gets the same, all its keys
//! being HSM keys. `--throttle-window-ms` scales the window (default 10,000 ms; a Managed
//! HSM's second is a tenth of it).
//!
//! A throttled request gets 429 `Throttled` "... Reason: VaultRequestTypeLimitReached" with no
//! `Retry-After` (vcsjones/AzureSignTool #219, dotnet/sign #403; survey 6b), and does not
//! count towards the limits ("Failed requests that return a 429 do not count towards the
//! throttle limits", MicrosoftDocs/azure-security-docs
//! `articles/key-vault/general/overview-throttling.md`).

use crate::error::ApiError;
use crate::flavor::{Clock, Flavor};
use crate::service::Service;
use crate::sync::lock;
use axum::http::{Method, StatusCode};
use byok_core::limits::{self, MhsmOperation};
use serde_json::Value;
use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Which limits `--throttle` sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleLimits {
    /// The published table.
    Azure,
    /// Per window: `create` creates and imports, `other` units of other transactions, for
    /// HSM keys (software keys: twice).
    Explicit { create: u32, other: u32 },
}

impl FromStr for ThrottleLimits {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "azure" {
            return Ok(Self::Azure);
        }
        let usage = || format!("'{s}': use azure, or create=N,other=M with N and M from 1 up");
        let (mut create, mut other) = (None, None);
        for part in s.split(',') {
            let (k, v) = part.split_once('=').ok_or_else(usage)?;
            let v: u32 = v.parse().ok().filter(|v| *v > 0).ok_or_else(usage)?;
            match k {
                "create" => create = Some(v),
                "other" => other = Some(v),
                _ => return Err(usage()),
            }
        }
        match (create, other) {
            (Some(create), Some(other)) => Ok(Self::Explicit { create, other }),
            _ => Err(usage()),
        }
    }
}

/// `--throttle` with its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    pub limits: ThrottleLimits,
    /// The window the limits are per, in milliseconds (the service's: 10,000).
    pub window_ms: u64,
}

/// The 429 a throttled request gets (survey 6b: no innererror, no Retry-After).
pub fn throttled() -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "Throttled",
        "Request was not processed because too many requests were received. Reason: \
         VaultRequestTypeLimitReached",
    )
}

/// One budget: at most `limit` units in any `window`.
///
/// A second sliding window, on purpose: byok-online's pacing (`pace.rs`, `Bucket`) keeps
/// its own, and both follow the same public source, Microsoft Learn "Azure Key Vault service
/// limits" (the weighted sum per 10 s window, docs/azure-behaviour.md 6a) and its throttling
/// guidance (`overview-throttling.md`: 429s do not count). They share the table
/// ([`byok_core::limits`]: data, cited once) but not the counting: the emulator is what
/// byok-online's pacing is tested against, so a counting mistake in one shared limiter
/// would pass its own test instead of being caught. The emulator's answers "refused now";
/// the client's answers "wait this long".
#[derive(Debug)]
pub struct Budget {
    limit: u64,
    window: Duration,
    spent: VecDeque<(Instant, u64)>,
}

impl Budget {
    fn new(limit: u64, window: Duration) -> Self {
        Self {
            limit,
            window,
            spent: VecDeque::new(),
        }
    }

    /// Spends `units` if they fit in the window ending now; a refusal spends nothing.
    fn spend(&mut self, units: u64, now: Instant) -> bool {
        while let Some((at, _)) = self.spent.front() {
            if now.duration_since(*at) >= self.window {
                self.spent.pop_front();
            } else {
                break;
            }
        }
        let used: u64 = self.spent.iter().map(|(_, u)| u).sum();
        if used + units > self.limit {
            return false;
        }
        self.spent.push_back((now, units));
        true
    }
}

/// What a request costs: which budget, and how many units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cost {
    /// A vault's create budget.
    Create(u64),
    /// A vault's budget of every other key transaction.
    Other(u64),
    /// A Managed HSM operation its page limits per second (one each).
    Mhsm(MhsmOperation),
    /// Not limited.
    Free,
}

/// The running limiter: its budgets, and the clock it counts by.
#[derive(Debug)]
pub struct Throttle {
    budgets: Budgets,
    clock: Clock,
}

#[derive(Debug)]
enum Budgets {
    /// Weighted budgets per window: creates, and everything else.
    Weighted(Mutex<[Budget; 2]>),
    /// Managed HSM's per-second limits, per operation: create, delete, purge, get.
    PerOperation(Mutex<[Budget; 4]>),
}

const MHSM_OPERATIONS: [MhsmOperation; 4] = [
    MhsmOperation::Create,
    MhsmOperation::Delete,
    MhsmOperation::Purge,
    MhsmOperation::Get,
];

impl Throttle {
    pub fn new(config: ThrottleConfig, flavor: Flavor, clock: Clock) -> Self {
        let window = Duration::from_millis(config.window_ms.max(1));
        let budgets = match (config.limits, flavor) {
            (ThrottleLimits::Azure, Flavor::Vault) => Budgets::Weighted(Mutex::new([
                Budget::new(limits::KV_CREATE_UNITS.into(), window),
                Budget::new(limits::KV_OTHER_UNITS.into(), window),
            ])),
            (ThrottleLimits::Azure, Flavor::ManagedHsm) => {
                // Per second: a tenth of the (scaled) 10 s window.
                let second = (window / 10).max(Duration::from_millis(1));
                Budgets::PerOperation(Mutex::new(
                    MHSM_OPERATIONS
                        .map(|op| Budget::new(limits::mhsm_per_second(op).into(), second)),
                ))
            }
            // N HSM-key creates and M HSM-key units: in the table's units, twice each.
            (ThrottleLimits::Explicit { create, other }, _) => Budgets::Weighted(Mutex::new([
                Budget::new(u64::from(create) * 2, window),
                Budget::new(u64::from(other) * 2, window),
            ])),
        };
        Self { budgets, clock }
    }

    /// Whether a request of this cost may go on at `now` (and if so, it is counted).
    fn admit_at(&self, cost: Cost, now: Instant) -> bool {
        match (&self.budgets, cost) {
            (_, Cost::Free) => true,
            (Budgets::Weighted(b), Cost::Create(units)) => lock(b)[0].spend(units, now),
            (Budgets::Weighted(b), Cost::Other(units)) => lock(b)[1].spend(units, now),
            (Budgets::Weighted(b), Cost::Mhsm(_)) => lock(b)[1].spend(2, now),
            (Budgets::PerOperation(b), Cost::Mhsm(op)) => {
                let i = MHSM_OPERATIONS.iter().position(|o| *o == op).unwrap_or(0);
                lock(b)[i].spend(1, now)
            }
            (Budgets::PerOperation(_), _) => true,
        }
    }

    /// Whether a request of this cost may go on now, by the limiter's clock (and if so, it
    /// is counted).
    pub fn admit(&self, cost: Cost) -> bool {
        self.admit_at(cost, self.clock.instant())
    }

    /// Whether this limiter counts Managed HSM operations (not a vault's weighted units).
    pub fn per_operation(&self) -> bool {
        matches!(self.budgets, Budgets::PerOperation(_))
    }
}

/// What a data-plane request costs on `limiter`, from its method, path and body, and the key
/// it names.
pub async fn cost(
    limiter: &Throttle,
    service: &Service,
    method: &Method,
    path: &str,
    body: &[u8],
) -> Cost {
    if limiter.per_operation() {
        return match limits::mhsm_operation(method.as_str(), path) {
            Some(op) => Cost::Mhsm(op),
            None => Cost::Free,
        };
    }
    let mhsm = service.options.flavor == Flavor::ManagedHsm;
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let json = || serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
    let hsm_kty = |v: &Value| v.as_str().is_some_and(|k| k.ends_with("-HSM"));
    let create = |hsm: bool| Cost::Create(limits::kv_create_cost(hsm).into());
    match (method, segments.as_slice()) {
        (&Method::POST, ["keys", _, "create"]) => create(mhsm || hsm_kty(&json()["kty"])),
        (&Method::PUT, ["keys", _]) => {
            let v = json();
            create(
                mhsm || hsm_kty(&v["key"]["kty"])
                    || v["Hsm"] == Value::Bool(true)
                    || v["key"]["key_hsm"].is_string(),
            )
        }
        (_, ["keys" | "deletedkeys", name, ..]) => {
            let stored = service
                .store
                .entry(name)
                .await
                .ok()
                .flatten()
                .and_then(|e| e.versions.last().map(|v| (v.kind().ok(), v.kty.hsm)));
            match stored {
                Some((Some(kind), hsm)) => {
                    Cost::Other(limits::kv_other_cost(kind, mhsm || hsm).into())
                }
                _ => Cost::Other(UNKNOWN_COST),
            }
        }
        _ => Cost::Other(UNKNOWN_COST),
    }
}

/// A transaction on no stored key costs what an RSA 2048 HSM-key one does.
const UNKNOWN_COST: u64 = 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse() {
        assert_eq!("azure".parse(), Ok(ThrottleLimits::Azure));
        assert_eq!(
            "create=2,other=16".parse(),
            Ok(ThrottleLimits::Explicit {
                create: 2,
                other: 16
            })
        );
        for bad in [
            "",
            "create=2",
            "create=0,other=1",
            "fast",
            "create=1,other=x",
        ] {
            assert!(bad.parse::<ThrottleLimits>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_weighted_sum_is_enforced_and_refusals_are_free() {
        let mut b = Budget::new(16, Duration::from_secs(60));
        let now = Instant::now();
        assert!(b.spend(8, now));
        assert!(b.spend(8, now));
        assert!(!b.spend(1, now));
        assert!(!b.spend(8, now));
        assert_eq!(b.spent.len(), 2);
        // After the window, the budget is back.
        assert!(b.spend(16, now + Duration::from_secs(60)));
    }

    #[test]
    fn a_vault_has_one_budget_for_hsm_and_software_keys() {
        let config = ThrottleConfig {
            limits: ThrottleLimits::Azure,
            window_ms: 10_000,
        };
        let t = Throttle::new(config, Flavor::Vault, Clock::system());
        let now = Instant::now();
        // 248 RSA 4096 HSM-key GETs (16 each) and 16 RSA 2048 HSM-key GETs (2 each) fill it:
        // then not one RSA 2048 software-key GET is left.
        for _ in 0..248 {
            assert!(t.admit_at(Cost::Other(16), now));
        }
        for _ in 0..16 {
            assert!(t.admit_at(Cost::Other(2), now));
        }
        assert!(!t.admit_at(Cost::Other(1), now));
        // Creates have their own budget: 10 HSM-key creates, then no software-key create.
        for _ in 0..10 {
            assert!(t.admit_at(Cost::Create(2), now));
        }
        assert!(!t.admit_at(Cost::Create(1), now));
    }

    #[test]
    fn a_managed_hsm_limits_each_operation_per_second() {
        let config = ThrottleConfig {
            limits: ThrottleLimits::Azure,
            window_ms: 10_000,
        };
        let t = Throttle::new(config, Flavor::ManagedHsm, Clock::system());
        let now = Instant::now();
        let op = Cost::Mhsm;
        assert!(t.admit_at(op(MhsmOperation::Create), now));
        assert!(!t.admit_at(op(MhsmOperation::Create), now));
        for _ in 0..10 {
            assert!(t.admit_at(op(MhsmOperation::Delete), now));
            assert!(t.admit_at(op(MhsmOperation::Purge), now));
        }
        assert!(!t.admit_at(op(MhsmOperation::Delete), now));
        assert!(!t.admit_at(op(MhsmOperation::Purge), now));
        for _ in 0..1100 {
            assert!(t.admit_at(op(MhsmOperation::Get), now));
        }
        assert!(!t.admit_at(op(MhsmOperation::Get), now));
        assert!(t.admit_at(Cost::Free, now));
        // A second later, each is back.
        let later = now + Duration::from_secs(1);
        assert!(t.admit_at(op(MhsmOperation::Create), later));
        assert!(t.admit_at(op(MhsmOperation::Get), later));
    }
}
