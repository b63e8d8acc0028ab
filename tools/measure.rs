//! What the load tools share: counters, latency histograms (HdrHistogram,
//! nanoseconds, 3 significant digits), progress lines, the `.hgrm`
//! percentile-distribution text and the SVG latency-by-percentile plot.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// A fresh histogram of nanoseconds (1 ns to 1 hour, 3 significant digits).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

/// Counters and latencies, shared by shard threads and the main thread.
pub struct Stats {
    /// Messages (or calls) accepted for sending.
    pub sent: AtomicU64,
    /// Of those, acknowledged (delivered / answered).
    pub acked: AtomicU64,
    /// Payload bytes acknowledged.
    pub bytes: AtomicU64,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    interval: Mutex<Histogram<u64>>,
    total: Mutex<Histogram<u64>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
            interval: Mutex::new(histogram()),
            total: Mutex::new(histogram()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Stats {
    /// One acknowledged message of `bytes`, `latency` after its (intended) send.
    pub fn ack(&self, latency: Duration, bytes: u64) {
        self.acked.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        let ns = (latency.as_nanos() as u64).max(1);
        lock(&self.interval).saturating_record(ns);
    }

    /// One failed message, by reason.
    pub fn error(&self, reason: &'static str) {
        *lock(&self.errors).entry(reason).or_default() += 1;
    }

    /// Errors by reason.
    pub fn errors(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.errors).clone()
    }

    /// Total errors.
    pub fn error_count(&self) -> u64 {
        lock(&self.errors).values().sum()
    }

    /// Takes the latencies recorded since the last call (added to the total).
    pub fn take_interval(&self) -> Histogram<u64> {
        let mut i = lock(&self.interval);
        let h = i.clone();
        i.reset();
        drop(i);
        let _ = lock(&self.total).add(&h);
        h
    }

    /// Every latency recorded (call after a last `take_interval`).
    pub fn total(&self) -> Histogram<u64> {
        self.take_interval();
        lock(&self.total).clone()
    }
}

/// Microseconds of a nanosecond histogram value.
pub fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// p50 / p90 / p99 / p99.9 / max (and min) in microseconds, as JSON.
pub fn latency_json(h: &Histogram<u64>) -> serde_json::Value {
    let q = |p: f64| if h.is_empty() { 0.0 } else { round2(us(h.value_at_quantile(p))) };
    serde_json::json!({
        "min": if h.is_empty() { 0.0 } else { round2(us(h.min())) },
        "p50": q(0.50), "p90": q(0.90), "p99": q(0.99), "p999": q(0.999),
        "max": if h.is_empty() { 0.0 } else { round2(us(h.max())) },
        "mean": if h.is_empty() { 0.0 } else { round2(h.mean() / 1000.0) },
    })
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// One progress line on stderr.
pub fn progress(elapsed: Duration, interval: Duration, stats: &Stats, last: &mut (u64, u64)) {
    let h = stats.take_interval();
    let acked = stats.acked.load(Ordering::Relaxed);
    let bytes = stats.bytes.load(Ordering::Relaxed);
    let secs = interval.as_secs_f64().max(1e-9);
    let rate = (acked - last.0) as f64 / secs;
    let mbs = (bytes - last.1) as f64 / secs / 1e6;
    *last = (acked, bytes);
    let (p50, p99) =
        if h.is_empty() { (0.0, 0.0) } else { (us(h.value_at_quantile(0.5)), us(h.value_at_quantile(0.99))) };
    eprintln!(
        "{:>6.1}s  {:>10.0} msgs/s  {:>9.2} MB/s  p50 {:>9.1} us  p99 {:>9.1} us  errors {}",
        elapsed.as_secs_f64(),
        rate,
        mbs,
        p50,
        p99,
        stats.error_count()
    );
}

/// Prints the human summary table of latencies.
pub fn print_latency_table(h: &Histogram<u64>) {
    if h.is_empty() {
        println!("  latency: no samples");
        return;
    }
    println!(
        "  latency (us): min {:.1}  p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
        us(h.min()),
        us(h.value_at_quantile(0.5)),
        us(h.value_at_quantile(0.9)),
        us(h.value_at_quantile(0.99)),
        us(h.value_at_quantile(0.999)),
        us(h.max())
    );
}

/// Writes HdrHistogram's percentile distribution text (values in
/// milliseconds, 5 ticks per half distance), as `HistogramLogProcessor`
/// and the standard plotter (`plotFiles.html`) read it.
pub fn write_hgrm(path: &Path, h: &Histogram<u64>) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let ms = |ns: u64| ns as f64 / 1e6;
    writeln!(f, "{:>12} {:>14} {:>10} {:>14}\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)")?;
    for v in h.iter_quantiles(5) {
        let p = v.quantile_iterated_to();
        let value = ms(h.highest_equivalent(v.value_iterated_to()));
        if p < 1.0 {
            writeln!(f, "{value:>12.3} {p:>2.12} {:>10} {:>14.2}", v.count_since_last_iteration(), 1.0 / (1.0 - p))?;
        } else {
            writeln!(f, "{value:>12.3} {p:>2.12} {:>10}", v.count_since_last_iteration())?;
        }
    }
    let mean = h.mean() / 1e6;
    let sd = h.stdev() / 1e6;
    writeln!(f, "#[Mean    = {mean:>12.3}, StdDeviation   = {sd:>12.3}]")?;
    writeln!(f, "#[Max     = {:>12.3}, Total count    = {:>12}]", ms(h.max()), h.len())?;
    // As HdrHistogram computes it: 2^ceil(log2(2 * 10^significant digits)).
    let sub_buckets = 2u64.pow((2.0 * 10f64.powi(i32::from(h.sigfig()))).log2().ceil() as u32);
    writeln!(f, "#[Buckets = {:>12}, SubBuckets     = {:>12}]", h.buckets(), sub_buckets)?;
    f.flush()
}

/// Draws latency by percentile (log-scaled "nines" on x) as an SVG.
pub fn write_plot(path: &Path, title: &str, series: &[(&str, &Histogram<u64>)]) -> Result<(), String> {
    use plotters::prelude::*;
    let e = |e: &dyn std::fmt::Display| e.to_string();
    // x = -log10(1 - p): 0 = p0, 1 = p90, 2 = p99, 3 = p99.9, 4 = p99.99
    let max_x = 4.0f64;
    let mut curves = Vec::new();
    let mut max_y = 1.0f64;
    let mut min_y = f64::MAX;
    for (name, h) in series {
        if h.is_empty() {
            continue;
        }
        let mut pts = Vec::new();
        for v in h.iter_quantiles(10) {
            let p = v.quantile_iterated_to().min(0.9999);
            let x = -(1.0 - p).log10();
            let y = us(h.highest_equivalent(v.value_iterated_to()));
            max_y = max_y.max(y);
            min_y = min_y.min(y);
            pts.push((x.min(max_x), y.max(0.01)));
        }
        curves.push((*name, pts));
    }
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(70)
        // Latency spans orders of magnitude (a stall next to microseconds):
        // a log scale shows both.
        .build_cartesian_2d(0f64..max_x, ((min_y.min(max_y) * 0.8).max(0.01)..max_y * 1.5).log_scale())
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (us, log scale)")
        .y_label_formatter(&|y| if *y >= 1000.0 { format!("{:.0}", y) } else { format!("{:.1}", y) })
        .x_labels(5)
        .x_label_formatter(&|x| match x.round() as i64 {
            0 => "0%".into(),
            1 => "90%".into(),
            2 => "99%".into(),
            3 => "99.9%".into(),
            _ => "99.99%".into(),
        })
        .draw()
        .map_err(|x| e(&x))?;
    let palette = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    for (i, (name, pts)) in curves.into_iter().enumerate() {
        let color = palette[i % palette.len()];
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))
}

/// Sleeps the calling (non-shard) thread until `t`.
pub fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// `size` bytes of deterministic pseudo-random data. (A repeated byte would
/// not do: a large Blob is a tree of 4 KiB leaves addressed by hash, and
/// identical leaves are carried once.)
pub fn payload(size: usize) -> bytes::Bytes {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut v = Vec::with_capacity(size + 8);
    while v.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(size);
    bytes::Bytes::from(v)
}
