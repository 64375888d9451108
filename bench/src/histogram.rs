//! Latencies in microsecond buckets below 1 ms, then 64 buckets per power of two (a
//! relative error under 1.6% up to hours), so millions of deliveries cost a fixed 34 KiB.

pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max_ns: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; 1024 + 54 * 64],
            total: 0,
            max_ns: 0,
        }
    }
}

impl Histogram {
    pub fn record(&mut self, latency_ns: u64) {
        self.counts[Self::bucket(latency_ns / 1000)] += 1;
        self.total += 1;
        self.max_ns = self.max_ns.max(latency_ns);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// The latency in ms below which a share `q` of the recordings fall; NaN when empty.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.total == 0 {
            return f64::NAN;
        }
        let rank = (q * self.total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bucket, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Self::bucket_value_ms(bucket);
            }
        }
        self.max()
    }

    /// How many latencies were recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The largest latency recorded, in ms.
    pub fn max(&self) -> f64 {
        self.max_ns as f64 / 1e6
    }

    fn bucket(micros: u64) -> usize {
        if micros < 1024 {
            return micros as usize;
        }
        let log = 63 - micros.leading_zeros() as usize;
        1024 + (log - 10) * 64 + ((micros >> (log - 6)) as usize & 63)
    }

    fn bucket_value_ms(bucket: usize) -> f64 {
        if bucket < 1024 {
            return bucket as f64 / 1000.0;
        }
        let log = (bucket - 1024) / 64 + 10;
        let mantissa = ((bucket - 1024) % 64) as u64 | 64;
        (mantissa << (log - 6)) as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_close(ms: f64, expected: f64) {
        assert!((ms - expected).abs() < 1e-9, "{ms} is not {expected}");
    }

    #[test]
    fn quantiles_below_a_millisecond_are_exact_to_the_microsecond() {
        let mut histogram = Histogram::default();
        for micros in 1..=100 {
            histogram.record(micros * 1000 + 300);
        }
        assert_close(histogram.quantile(0.50), 0.050);
        assert_close(histogram.quantile(0.99), 0.099);
        assert_close(histogram.max(), 0.1003);
    }

    #[test]
    fn long_latencies_keep_two_significant_digits() {
        let mut histogram = Histogram::default();
        histogram.record(1_234_567_000);
        let ms = histogram.quantile(0.5);
        assert!((ms - 1234.567).abs() / 1234.567 < 0.016, "{ms}");
    }

    #[test]
    fn merging_adds_the_counts() {
        let (mut one, mut other) = (Histogram::default(), Histogram::default());
        one.record(2_000);
        other.record(4_000);
        other.record(4_000);
        one.merge(&other);
        assert_close(one.quantile(0.34), 0.004);
        assert_close(one.quantile(0.33), 0.002);
        assert!(Histogram::default().quantile(0.5).is_nan());
    }
}
