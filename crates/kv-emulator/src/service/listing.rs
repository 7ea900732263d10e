//! Lists, paged: keys (latest version each), one key's versions, deleted keys.

use super::{Service, shown};
use crate::error::ApiResult;
use crate::model::{KeyEntry, Pending};
use serde_json::{Value, json};

impl Service {
    /// The items of a list from `skip`, at most `max`, and whether more follow.
    /// `versions_of` lists one key's versions (none for a key that does not exist: the
    /// service answers 200 with an empty list, docs/azure-behaviour.md 2c); otherwise keys,
    /// deleted ones if `deleted`. Keys whose deletion or recovery still runs are in neither.
    pub async fn list(
        &self,
        versions_of: Option<&str>,
        deleted: bool,
        skip: usize,
        max: usize,
    ) -> ApiResult<(Vec<Value>, bool)> {
        if let Some(name) = versions_of {
            let items: Vec<Value> = match self.live(name).await {
                Ok(entry) => entry
                    .versions
                    .iter()
                    .map(|v| v.item(self.view(), &entry.name, true))
                    .collect(),
                Err(_) => Vec::new(),
            };
            let more = items.len() > skip + max;
            return Ok((items.into_iter().skip(skip).take(max).collect(), more));
        }
        let now = self.clock.instant();
        let keep = |pending| shown(deleted, Pending::running_at(pending, now), deleted);
        let (entries, more) = self.store.page(deleted, skip, max, keep).await?;
        Ok((entries.iter().map(|e| self.key_item(e)).collect(), more))
    }

    /// A key's item: its latest version, and for a deleted key when and until when.
    fn key_item(&self, entry: &KeyEntry) -> Value {
        let mut item = entry.latest().item(self.view(), &entry.name, false);
        if let Some(d) = &entry.deleted {
            item["recoveryId"] = json!(format!("{}/deletedkeys/{}", self.vault_url, entry.name));
            item["deletedDate"] = json!(d.deleted_date);
            item["scheduledPurgeDate"] = json!(d.scheduled_purge_date);
        }
        item
    }
}
