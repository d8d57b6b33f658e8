//! The growth plot: time of each run-report phase against the VM count, log-log, one panel
//! for the first sync and one for the rerun, with a dashed slope-1 line (linear growth) for
//! comparison: a phase steeper than it grows worse than linearly.
//!
//! Edges: per-phase series in, an SVG file out (plotters' SVG backend, no fonts needed).

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

/// Times below this are drawn at it: a log axis has no zero, and under 1 ms is noise anyway.
const FLOOR_MS: f64 = 1.0;
const WIDTH: u32 = 1200;
const HEIGHT: u32 = 560;

/// One panel: a title and `(phase, [(vms, ms)])` series.
pub struct Panel<'a> {
    /// Shown above the panel.
    pub title: &'a str,
    /// Phase name and its points.
    pub series: Vec<(String, Vec<(f64, f64)>)>,
}

/// Draws the panels side by side into `path`.
pub fn growth_svg(path: &Path, panels: &[Panel<'_>]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("plot: {e}"))?;
    let areas = root.split_evenly((1, panels.len().max(1)));
    for (area, panel) in areas.iter().zip(panels) {
        draw_panel(area, panel)?;
    }
    root.present()
        .map_err(|e| anyhow!("plot {}: {e}", path.display()))?;
    Ok(())
}

fn draw_panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    panel: &Panel<'_>,
) -> anyhow::Result<()> {
    let points = panel.series.iter().flat_map(|(_, p)| p.iter());
    let (mut x0, mut x1, mut y1) = (f64::MAX, f64::MIN, FLOOR_MS);
    for &(x, y) in points {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    if x0 >= x1 {
        (x0, x1) = (1.0, 10.0);
    }
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (x0 * 0.8..x1 * 1.25).log_scale(),
            (FLOOR_MS * 0.8..y1 * 2.0).log_scale(),
        )
        .map_err(|e| anyhow!("plot: {e}"))?;
    chart
        .configure_mesh()
        .x_desc("VMs")
        .y_desc("phase time (ms)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|e| anyhow!("plot: {e}"))?;
    for (i, (name, pts)) in panel.series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let pts: Vec<(f64, f64)> = pts.iter().map(|&(x, y)| (x, y.max(FLOOR_MS))).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|e| anyhow!("plot: {e}"))?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|e| anyhow!("plot: {e}"))?;
    }
    // Linear reference through the largest point of "total", if any.
    if let Some((_, pts)) = panel.series.iter().find(|(n, _)| n == "total")
        && let Some(&(xm, ym)) = pts.last()
        && ym > 0.0
    {
        let line = vec![(x0, ym * x0 / xm), (xm, ym)];
        let grey = RGBColor(120, 120, 120);
        chart
            .draw_series(DashedLineSeries::new(line, 6, 4, grey.stroke_width(1)))
            .map_err(|e| anyhow!("plot: {e}"))?
            .label("linear (slope 1)")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], grey));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow!("plot: {e}"))?;
    Ok(())
}
