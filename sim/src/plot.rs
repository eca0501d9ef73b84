//! `--plot`: registered and discoverable peers over virtual time, one
//! panel per scenario, as SVG.

use plotters::prelude::*;

use crate::report::Report;

/// Draws the samples of every report into an SVG file.
pub fn draw(path: &str, reports: &[Report]) -> Result<(), String> {
    let panels = reports.len().max(1);
    let root = SVGBackend::new(path, (900, 320 * panels as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let areas = root.split_evenly((panels, 1));
    for (area, report) in areas.iter().zip(reports) {
        let t_max = report.samples.iter().map(|s| s.t_s).fold(1.0, f64::max);
        let y_max = report
            .samples
            .iter()
            .map(|s| s.registered.max(s.discoverable))
            .max()
            .unwrap_or(1)
            .max(1) as f64
            * 1.1;
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!("{} (seed {})", report.scenario, report.params.seed),
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..t_max, 0.0..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("virtual seconds")
            .y_desc("peers")
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(LineSeries::new(
                report.samples.iter().map(|s| (s.t_s, s.registered as f64)),
                &BLUE,
            ))
            .map_err(|e| e.to_string())?
            .label("registered")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
        chart
            .draw_series(LineSeries::new(
                report
                    .samples
                    .iter()
                    .map(|s| (s.t_s, s.discoverable as f64)),
                &RED,
            ))
            .map_err(|e| e.to_string())?
            .label("discoverable")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}
