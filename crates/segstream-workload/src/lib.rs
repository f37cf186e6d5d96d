//! The reference workload as a deterministic generator: the same seed gives the same
//! events and profiles, byte for byte, so every benchmark, the demo and every
//! comparison run on the same work.
//!
//! - Users `u0 .. u{U-1}`; activity per user is log-normal (sigma 1.2): events pick
//!   their user by these weights, so most users are rare and a few are hundreds of
//!   times the median.
//! - Event types: page_view 70%, add_to_cart 15%, login 8%, purchase 5%, email_open 2%.
//!   A page view is of `/pricing` 10% of the time, else one of 50 pages; carts and
//!   purchases name one of 10,000 products; a purchase's amount is log-normal with a
//!   median of about 60.
//! - Event time advances steadily from `start` by `step` per event; 1% of events are
//!   late by up to 10 minutes.
//! - Every user has a profile: one of 30 countries, a log-normal lifetime value (about
//!   20% above 500) and a sign-up time in the 365 days before `start`.
//! - The segments ([`segments`]): the seven, and the 105 of the many-segment workload.

use std::sync::Arc;

pub mod segments;

use datafusion::arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampNanosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

const NANOS_PER_MINUTE: i64 = 60_000_000_000;
const NANOS_PER_DAY: i64 = 24 * 60 * NANOS_PER_MINUTE;

/// What to generate.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    pub users: usize,
    pub seed: u64,
    /// Event time of the first event, in nanoseconds since the epoch.
    pub start: i64,
    /// Event time between consecutive events.
    pub step: i64,
}

impl WorkloadConfig {
    /// `users` users whose `events` events span `days` days from 2026-01-01.
    pub fn new(users: usize, events: u64, days: i64) -> Self {
        Self {
            users: users.max(1),
            seed: 42,
            start: 1_767_225_600_000_000_000, // 2026-01-01 00:00:00 UTC
            step: (days * NANOS_PER_DAY / events.max(1) as i64).max(1),
        }
    }
}

/// SplitMix64: small, fast and reproducible on every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Log-normal with the given log-mean and log-standard deviation (Box-Muller).
    pub fn log_normal(&mut self, mu: f64, sigma: f64) -> f64 {
        let (u1, u2) = (self.unit().max(f64::MIN_POSITIVE), self.unit());
        let normal = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        (mu + sigma * normal).exp()
    }
}

pub fn events_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("page", DataType::Utf8, true),
        Field::new("product_id", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
    ]))
}

pub fn profiles_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("country", DataType::Utf8, true),
        Field::new("lifetime_value", DataType::Float64, true),
        Field::new("signup_at", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
    ]))
}

/// Generates events in order of their sequence number, in batches.
pub struct EventGenerator {
    config: WorkloadConfig,
    rng: Rng,
    /// Cumulative activity weights: an event's user is found by binary search.
    cumulative: Vec<f64>,
    next: u64,
}

impl EventGenerator {
    pub fn new(config: WorkloadConfig) -> Self {
        let mut weights_rng = Rng::new(config.seed ^ 0xa11ce);
        let mut total = 0.0;
        let cumulative = (0..config.users)
            .map(|_| {
                total += weights_rng.log_normal(0.0, 1.2);
                total
            })
            .collect();
        Self { rng: Rng::new(config.seed), config, cumulative, next: 0 }
    }

    /// Events generated so far.
    pub fn generated(&self) -> u64 {
        self.next
    }

    /// The event time the next event is due at (before any lateness).
    pub fn clock(&self) -> i64 {
        self.config.start + self.next as i64 * self.config.step
    }

    fn user(&mut self) -> usize {
        let total = *self.cumulative.last().unwrap_or(&1.0);
        let x = self.rng.unit() * total;
        self.cumulative.partition_point(|c| *c <= x).min(self.config.users - 1)
    }

    /// The next `n` events as one batch of the `events` stream's schema.
    pub fn next_batch(&mut self, n: usize) -> RecordBatch {
        let mut event_id = Vec::with_capacity(n);
        let mut user_id = Vec::with_capacity(n);
        let mut event_type = Vec::with_capacity(n);
        let mut page: Vec<Option<String>> = Vec::with_capacity(n);
        let mut product: Vec<Option<String>> = Vec::with_capacity(n);
        let mut amount: Vec<Option<f64>> = Vec::with_capacity(n);
        let mut ts = Vec::with_capacity(n);
        for _ in 0..n {
            let seq = self.next;
            self.next += 1;
            let user = self.user();
            let roll = self.rng.below(100);
            let kind = match roll {
                0..=69 => "page_view",
                70..=84 => "add_to_cart",
                85..=92 => "login",
                93..=97 => "purchase",
                _ => "email_open",
            };
            event_id.push(format!("e{seq}"));
            user_id.push(format!("u{user}"));
            event_type.push(kind);
            page.push((kind == "page_view").then(|| {
                if self.rng.below(10) == 0 {
                    "/pricing".to_string()
                } else {
                    format!("/p/{}", self.rng.below(50))
                }
            }));
            let buys = kind == "add_to_cart" || kind == "purchase";
            product.push(buys.then(|| format!("sku{}", self.rng.below(10_000))));
            amount.push(
                (kind == "purchase").then(|| (self.rng.log_normal(60f64.ln(), 0.8) * 100.0).round() / 100.0),
            );
            let mut t = self.config.start + seq as i64 * self.config.step;
            if self.rng.below(100) == 0 {
                t -= self.rng.below(10 * NANOS_PER_MINUTE as u64) as i64;
            }
            ts.push(t);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(event_id)),
            Arc::new(StringArray::from(user_id)),
            Arc::new(StringArray::from(event_type)),
            Arc::new(StringArray::from(page)),
            Arc::new(StringArray::from(product)),
            Arc::new(Float64Array::from(amount)),
            Arc::new(TimestampNanosecondArray::from(ts)),
        ];
        RecordBatch::try_new(events_schema(), columns)
            .expect("the generator builds batches of its own schema")
    }
}

/// Profiles of users `from .. to` (every user has one), one batch.
pub fn profiles(config: &WorkloadConfig, from: usize, to: usize) -> RecordBatch {
    let to = to.min(config.users);
    let mut user_id = Vec::new();
    let mut country = Vec::new();
    let mut value = Vec::new();
    let mut signup = Vec::new();
    for user in from..to {
        // Each profile from its own stream of numbers, so any range is reproducible.
        let mut rng = Rng::new(config.seed ^ (user as u64).wrapping_mul(0x9e37_79b9));
        user_id.push(format!("u{user}"));
        country.push(format!("C{:02}", rng.below(30)));
        value.push((rng.log_normal(5.2, 1.2) * 100.0).round() / 100.0);
        signup.push(config.start - rng.below(365 * NANOS_PER_DAY as u64) as i64);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(user_id)),
        Arc::new(StringArray::from(country)),
        Arc::new(Float64Array::from(value)),
        Arc::new(TimestampNanosecondArray::from(signup)),
    ];
    RecordBatch::try_new(profiles_schema(), columns).expect("the generator builds batches of its own schema")
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Array;

    #[test]
    fn the_same_seed_gives_the_same_events() {
        let config = WorkloadConfig::new(1000, 10_000, 30);
        let a = EventGenerator::new(config.clone()).next_batch(500);
        let b = EventGenerator::new(config).next_batch(500);
        assert_eq!(a, b);
    }

    #[test]
    fn the_mix_follows_the_workload() {
        let mut generator = EventGenerator::new(WorkloadConfig::new(10_000, 100_000, 30));
        let batch = generator.next_batch(100_000);
        let kinds = batch.column(2).as_any().downcast_ref::<StringArray>().unwrap();
        let share =
            |k: &str| (0..kinds.len()).filter(|&i| kinds.value(i) == k).count() as f64 / kinds.len() as f64;
        assert!((share("page_view") - 0.70).abs() < 0.01);
        assert!((share("purchase") - 0.05).abs() < 0.005);
        let users = batch.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        let mut counts = std::collections::HashMap::new();
        for i in 0..users.len() {
            *counts.entry(users.value(i)).or_insert(0usize) += 1;
        }
        let max = *counts.values().max().unwrap();
        assert!(max < 5_000, "no single user dominates: {max}");
        let amounts = batch.column(5).as_any().downcast_ref::<Float64Array>().unwrap();
        let mut bought: Vec<f64> =
            (0..amounts.len()).filter(|&i| amounts.is_valid(i)).map(|i| amounts.value(i)).collect();
        bought.sort_by(f64::total_cmp);
        let median = bought[bought.len() / 2];
        assert!((45.0..80.0).contains(&median), "median amount {median}");
        let values = profiles(&WorkloadConfig::new(10_000, 1, 1), 0, 10_000);
        let ltv = values.column(2).as_any().downcast_ref::<Float64Array>().unwrap();
        let high = (0..ltv.len()).filter(|&i| ltv.value(i) > 500.0).count() as f64 / ltv.len() as f64;
        assert!((0.12..0.30).contains(&high), "share above 500: {high}");
    }
}
