//! What the kernel probes saw during one call: the difference of the
//! thread's cumulative counters (declared once, `ThreadCounters`) plus the
//! on-CPU time derived from the call's wall time. One field table (`fields`)
//! drives the per-call CSV columns and the JSON; old results files without
//! the newer fields still read (those count as 0).
use std::{collections::BTreeMap, ops::Deref};

use profiler_common::call::ThreadCounters;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _, ser::SerializeMap};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelCall {
    pub counters: ThreadCounters,
    /// Wall time minus time switched out.
    pub on_cpu_ns: u64,
}

/// Derived, not counted: placed before its complement `off_cpu_ns`.
const ON_CPU: &str = "on_cpu_ns";
const ON_CPU_BEFORE: &str = "off_cpu_ns";
/// Fields added after the first results schema: absent in older files.
const ADDED_LATER: &[&str] = &["exporter_errors", "uring_requests", "uring_ns"];

impl Deref for KernelCall {
    type Target = ThreadCounters;
    fn deref(&self) -> &ThreadCounters {
        &self.counters
    }
}

impl KernelCall {
    pub fn between(before: &ThreadCounters, after: &ThreadCounters, wall_ns: u64) -> KernelCall {
        let counters = after.since(before);
        KernelCall {
            counters,
            on_cpu_ns: wall_ns.saturating_sub(counters.off_cpu_ns),
        }
    }

    pub fn add(&mut self, other: &KernelCall) {
        self.counters.add(&other.counters);
        self.on_cpu_ns += other.on_cpu_ns;
    }

    /// How many fields `fields` yields.
    pub const COLUMN_COUNT: usize = ThreadCounters::FIELDS.len() + 1;

    /// The column names, in CSV order.
    pub fn columns() -> Vec<&'static str> {
        KernelCall::default().fields().map(|(n, _)| n).collect()
    }

    /// (name, value) of every field, in CSV order.
    pub fn fields(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        ThreadCounters::FIELDS
            .iter()
            .zip(self.counters.values())
            .flat_map(|(&name, v)| {
                let on_cpu = (name == ON_CPU_BEFORE).then_some((ON_CPU, self.on_cpu_ns));
                on_cpu.into_iter().chain([(name, v)])
            })
    }
}

impl Serialize for KernelCall {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for (name, v) in self.fields() {
            map.serialize_entry(name, &v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for KernelCall {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<KernelCall, D::Error> {
        let mut given: BTreeMap<String, u64> = BTreeMap::deserialize(d)?;
        let mut take = |name: &str| match given.remove(name) {
            Some(v) => Ok(v),
            None if ADDED_LATER.contains(&name) => Ok(0),
            None => Err(D::Error::missing_field_name(name)),
        };
        let mut values = [0u64; ThreadCounters::FIELDS.len()];
        for (v, name) in values.iter_mut().zip(ThreadCounters::FIELDS) {
            *v = take(name)?;
        }
        let on_cpu_ns = take(ON_CPU)?;
        if let Some(unknown) = given.keys().next() {
            return Err(D::Error::custom(format!(
                "unknown kernel field `{unknown}`"
            )));
        }
        Ok(KernelCall {
            counters: ThreadCounters::from_values(values),
            on_cpu_ns,
        })
    }
}

trait MissingField {
    fn missing_field_name(name: &str) -> Self;
}

impl<E: serde::de::Error> MissingField for E {
    fn missing_field_name(name: &str) -> E {
        E::custom(format!("missing kernel field `{name}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_keep_the_first_schema_order_and_append_new_fields() {
        assert_eq!(
            KernelCall::columns(),
            [
                "ioctl_calls",
                "ioctl_ns",
                "ioctl_errors",
                "exporter_calls",
                "exporter_ns",
                "exporter_bytes",
                "block_requests",
                "block_bytes",
                "block_device_ns",
                "on_cpu_ns",
                "off_cpu_ns",
                "switches",
                "exporter_errors",
                "uring_requests",
                "uring_ns",
            ]
        );
    }

    #[test]
    fn json_round_trips_and_old_files_read() {
        let before = ThreadCounters::default();
        let mut after =
            ThreadCounters::from_values([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
        after.off_cpu_ns = 30;
        let k = KernelCall::between(&before, &after, 100);
        assert_eq!((k.on_cpu_ns, k.exporter_errors), (70, 12));
        let text = serde_json::to_string(&k).unwrap();
        assert_eq!(serde_json::from_str::<KernelCall>(&text).unwrap(), k);
        let old = text
            .replace(",\"exporter_errors\":12", "")
            .replace(",\"uring_requests\":13", "")
            .replace(",\"uring_ns\":14", "");
        let read = serde_json::from_str::<KernelCall>(&old).unwrap();
        assert_eq!((read.exporter_errors, read.uring_requests), (0, 0));
        let unknown = text.replace("\"switches\"", "\"bogus\"");
        assert!(serde_json::from_str::<KernelCall>(&unknown).is_err());
    }
}
