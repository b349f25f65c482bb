//! The timeline of a `weir perf` run, and its chart (`--chart FILE.svg`): records per second
//! and latency percentiles (p50, p99) per second, drawn with plotters' SVG backend, for people
//! who would rather look than read.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{anyhow, Result};
use hdrhistogram::Histogram;
use plotters::prelude::*;

/// Records and latencies, bucketed by the second of the run they happened in.
#[derive(Debug)]
pub(crate) struct Timeline {
    start: Instant,
    /// Per second: records, and their latencies when they have any (µs, 2 significant
    /// digits: a chart needs no more, and an hour's run stays small).
    seconds: Vec<(u64, Option<Histogram<u64>>)>,
}

/// A timeline several producers or consumers record into.
pub(crate) type SharedTimeline = Arc<Mutex<Timeline>>;

impl Timeline {
    pub(crate) fn shared() -> SharedTimeline {
        Arc::new(Mutex::new(Timeline {
            start: Instant::now(),
            seconds: Vec::new(),
        }))
    }

    /// One record at `at`, with its latency in µs when it has one.
    pub(crate) fn record(&mut self, at: Instant, latency_us: Option<u64>) {
        let Some(second) = at
            .checked_duration_since(self.start)
            .map(|d| d.as_secs() as usize)
        else {
            return;
        };
        while self.seconds.len() <= second {
            self.seconds.push((0, None));
        }
        let (count, hist) = &mut self.seconds[second];
        *count += 1;
        if let Some(us) = latency_us {
            if hist.is_none() {
                *hist = Histogram::new_with_bounds(1, 3_600_000_000, 2).ok();
            }
            if let Some(h) = hist {
                let _ = h.record(us.max(1));
            }
        }
    }

    /// Draws the timeline to `path` (SVG).
    pub(crate) fn draw(&self, path: &Path, title: &str) -> Result<()> {
        let fail = |e: &dyn std::fmt::Display| anyhow!("cannot draw {}: {e}", path.display());
        let secs = self.seconds.len().max(1) as f64;
        let rates: Vec<(f64, f64)> = self
            .seconds
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (i as f64 + 0.5, *n as f64))
            .collect();
        let quantile = |q: f64| -> Vec<(f64, f64)> {
            self.seconds
                .iter()
                .enumerate()
                .filter_map(|(i, (_, h))| h.as_ref().filter(|h| !h.is_empty()).map(|h| (i, h)))
                .map(|(i, h)| (i as f64 + 0.5, h.value_at_quantile(q) as f64 / 1000.0))
                .collect()
        };
        let (p50, p99) = (quantile(0.5), quantile(0.99));
        let top = |points: &[(f64, f64)]| {
            points.iter().map(|p| p.1).fold(0.0f64, f64::max).max(1e-3) * 1.1
        };
        let root = SVGBackend::new(path, (960, 640)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let (upper, lower) = root.split_vertically(320);
        let mut chart = ChartBuilder::on(&upper)
            .caption(format!("{title}: records per second"), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(80)
            .build_cartesian_2d(0f64..secs, 0f64..top(&rates))
            .map_err(|e| fail(&e))?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("records/s")
            .draw()
            .map_err(|e| fail(&e))?;
        chart
            .draw_series(LineSeries::new(rates, &BLUE))
            .map_err(|e| fail(&e))?;
        let mut chart = ChartBuilder::on(&lower)
            .caption(format!("{title}: latency per second"), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(80)
            .build_cartesian_2d(0f64..secs, 0f64..top(&p99))
            .map_err(|e| fail(&e))?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("ms")
            .draw()
            .map_err(|e| fail(&e))?;
        chart
            .draw_series(LineSeries::new(p50, &GREEN))
            .map_err(|e| fail(&e))?
            .label("p50")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
        chart
            .draw_series(LineSeries::new(p99, &RED))
            .map_err(|e| fail(&e))?
            .label("p99")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(|e| fail(&e))?;
        root.present().map_err(|e| fail(&e))?;
        Ok(())
    }
}
