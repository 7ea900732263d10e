//! Throttling by Key Vault's published limits (`--throttle`), off by default.
//!
//! The table (MicrosoftDocs/azure-docs `includes/key-vault-limits.md`, the Learn page
//! https://learn.microsoft.com/en-us/azure/key-vault/general/service-limits; survey section
//! 6a), per vault and per window of 10 seconds:
//!
//! | key type                | HSM create | HSM other | software create | software other |
//! |-------------------------|-----------:|----------:|----------------:|---------------:|
//! | RSA 2048, EC (any)      |         10 |     2,000 |              20 |          4,000 |
//! | RSA 3072                |         10 |       500 |              20 |          1,000 |
//! | RSA 4096                |         10 |       250 |              20 |            500 |
//!
//! "The throttling thresholds are weighted, and enforcement is on their sum": the emulator
//! keeps one budget per column in units of the cheapest kind, and a transaction on an RSA
//! 3072 key costs 4 units, on an RSA 4096 key 8 (so 250 RSA 4096 GETs use the whole 2,000).
//! Creates and imports cost 1 unit of the create budget. A request that names no stored key
//! (a list, a key that does not exist) costs 1 unit of the HSM "other" budget (inferred: the
//! table does not say; the smaller budget is the stricter choice).
//!
//! `--throttle create=N,other=M` replaces the HSM column's limits (for tests, with the same
//! weights); the software column gets twice them, the table's ratio. `--throttle-window-ms`
//! scales the window (default 10,000 ms).
//!
//! A throttled request gets 429 `Throttled` "... Reason: VaultRequestTypeLimitReached" with no
//! `Retry-After` (vcsjones/AzureSignTool #219, dotnet/sign #403; survey 6b), and does not
//! count towards the limits ("Failed requests that return a 429 do not count towards the
//! throttle limits", MicrosoftDocs/azure-security-docs
//! `articles/key-vault/general/overview-throttling.md`).
//!
//! Managed HSM's limits are per second and per HSM instance (the same include): with
//! `--throttle azure` the emulator limits key creation (create and import) to 1 per tenth of
//! the window (1 per second by default) and nothing else, since "Managed HSM does not throttle
//! on cryptographic operation transactions" (scaling guidance). Explicit limits apply to a
//! Managed HSM as given, all keys counting as HSM keys.

use crate::error::ApiError;
use crate::service::{Flavor, Service};
use axum::http::{Method, StatusCode};
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
#[derive(Debug)]
struct Budget {
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
pub struct Cost {
    pub create: bool,
    pub hsm: bool,
    pub units: u64,
}

/// The running limiter: HSM create, HSM other, software create, software other.
#[derive(Debug)]
pub struct Throttle {
    budgets: Mutex<[Budget; 4]>,
}

impl Throttle {
    pub fn new(config: ThrottleConfig, flavor: Flavor) -> Self {
        let window = Duration::from_millis(config.window_ms.max(1));
        let unlimited = || Budget::new(u64::MAX / 2, window);
        let budgets = match (config.limits, flavor) {
            (ThrottleLimits::Azure, Flavor::Vault) => [
                Budget::new(10, window),
                Budget::new(2000, window),
                Budget::new(20, window),
                Budget::new(4000, window),
            ],
            (ThrottleLimits::Azure, Flavor::ManagedHsm) => [
                Budget::new(1, (window / 10).max(Duration::from_millis(1))),
                unlimited(),
                unlimited(),
                unlimited(),
            ],
            (ThrottleLimits::Explicit { create, other }, _) => [
                Budget::new(create.into(), window),
                Budget::new(other.into(), window),
                Budget::new(u64::from(create) * 2, window),
                Budget::new(u64::from(other) * 2, window),
            ],
        };
        Self {
            budgets: Mutex::new(budgets),
        }
    }

    /// Whether a request of this cost may go on (and if so, it is counted).
    pub fn admit(&self, cost: Cost) -> bool {
        let index = match (cost.hsm, cost.create) {
            (true, true) => 0,
            (true, false) => 1,
            (false, true) => 2,
            (false, false) => 3,
        };
        let mut budgets = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
        budgets[index].spend(cost.units, Instant::now())
    }
}

/// Units of a transaction on a key of this type: the table's "other" limits are 2,000 for RSA
/// 2048 and EC, 500 for RSA 3072 and 250 for RSA 4096.
pub fn weight(kty: &str, bits: u32) -> u64 {
    if kty.starts_with("RSA") {
        match bits {
            0..=2048 => 1,
            2049..=3072 => 4,
            _ => 8,
        }
    } else {
        1
    }
}

/// What a data-plane request costs, from its method, path and body, and the key it names.
pub async fn cost(service: &Service, method: &Method, path: &str, body: &[u8]) -> Cost {
    let mhsm = service.options.flavor == Flavor::ManagedHsm;
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let json = || serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
    let hsm_kty = |v: &Value| v.as_str().is_some_and(|k| k.ends_with("-HSM"));
    match (method, segments.as_slice()) {
        (&Method::POST, ["keys", _, "create"]) => Cost {
            create: true,
            hsm: mhsm || hsm_kty(&json()["kty"]),
            units: 1,
        },
        (&Method::PUT, ["keys", _]) => {
            let v = json();
            let hsm = mhsm
                || hsm_kty(&v["key"]["kty"])
                || v["Hsm"] == Value::Bool(true)
                || v["key"]["key_hsm"].is_string();
            Cost {
                create: true,
                hsm,
                units: 1,
            }
        }
        (_, ["keys" | "deletedkeys", name, ..]) => {
            let stored = service
                .store
                .entry(name)
                .await
                .ok()
                .flatten()
                .and_then(|e| e.versions.last().map(|v| (v.kty.clone(), v.bits)));
            match stored {
                Some((kty, bits)) => Cost {
                    create: false,
                    hsm: mhsm || kty.ends_with("-HSM"),
                    units: weight(&kty, bits),
                },
                None => Cost {
                    create: false,
                    hsm: true,
                    units: 1,
                },
            }
        }
        _ => Cost {
            create: false,
            hsm: true,
            units: 1,
        },
    }
}

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
        assert_eq!(weight("RSA-HSM", 4096), 8);
        assert_eq!(weight("RSA", 3072), 4);
        assert_eq!(weight("EC-HSM", 384), 1);
    }
}
