//! Charts of a query's result in the terminal, for `\chart` and `finq sql --chart`: a
//! (label, number) result as horizontal bars, a (date, number) result as a sparkline and a
//! line (braille, drawn by `textplots`).

use anyhow::{Result, bail};
use chrono::NaiveDate;
use finq_analytics::query::QueryResult;
use textplots::{Chart, LabelBuilder, LabelFormat, Plot, Shape};

/// Draw a two-column result for a terminal `width` characters wide.
pub fn chart(result: &QueryResult, width: usize) -> Result<String> {
    if result.columns.len() != 2 {
        bail!(
            "a chart needs two columns, a label or a date and then a number; this result has {} ({})",
            result.columns.len(),
            result.columns.join(", ")
        );
    }
    if !result.is_numeric(1) {
        bail!(
            "a chart's second column must be a number; `{}` is {}",
            result.columns[1],
            result.type_name(1)
        );
    }
    let rows = result.rows();
    if rows.is_empty() {
        bail!("nothing to draw: the query returned no rows");
    }
    let value = |cell: &Option<String>| cell.as_deref().and_then(|v| v.parse::<f64>().ok());
    let width = width.max(40);
    if result.is_date(0) {
        let points: Vec<(NaiveDate, f64)> = rows
            .iter()
            .filter_map(|r| {
                let day = r[0].as_deref()?.get(..10)?.parse().ok()?;
                Some((day, value(&r[1])?))
            })
            .collect();
        if points.is_empty() {
            bail!("nothing to draw: every row's date or number is NULL");
        }
        Ok(line(&result.columns[1], &points, width))
    } else {
        let rows: Vec<(String, f64)> = rows
            .iter()
            .filter_map(|r| Some((r[0].clone().unwrap_or_else(|| "NULL".into()), value(&r[1])?)))
            .collect();
        Ok(bars(&rows, width))
    }
}

/// Horizontal bars for (label, value) pairs, scaled to the largest size; negative values
/// in a lighter shade.
pub fn bars(rows: &[(String, f64)], width: usize) -> String {
    let label = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    let figures: Vec<String> = rows.iter().map(|r| format!("{:.2}", r.1)).collect();
    let figure = figures.iter().map(|f| f.len()).max().unwrap_or(0);
    let room = width.saturating_sub(label + figure + 3).max(10);
    let top = rows.iter().map(|r| r.1.abs()).fold(0.0_f64, f64::max);
    let mut out = String::new();
    for ((name, value), text) in rows.iter().zip(&figures) {
        let n = if top > 0.0 {
            ((value.abs() / top) * room as f64).round() as usize
        } else {
            0
        };
        let bar = if *value < 0.0 { "▒" } else { "█" }.repeat(n);
        let pad = " ".repeat(label - name.chars().count());
        out.push_str(&format!("{name}{pad}  {bar} {text}\n"));
    }
    out
}

/// Eight levels of block, lowest to highest.
const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// One character per value (values averaged into `width` buckets when there are more).
pub fn sparkline(values: &[f64], width: usize) -> String {
    let buckets: Vec<f64> = if values.len() <= width || width == 0 {
        values.to_vec()
    } else {
        (0..width)
            .map(|b| {
                let from = b * values.len() / width;
                let to = ((b + 1) * values.len() / width).max(from + 1);
                values[from..to].iter().sum::<f64>() / (to - from) as f64
            })
            .collect()
    };
    let (lo, hi) = buckets
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(*v), hi.max(*v))
        });
    buckets
        .iter()
        .map(|v| {
            if hi > lo {
                LEVELS[(((v - lo) / (hi - lo)) * 7.0).round() as usize]
            } else {
                LEVELS[3]
            }
        })
        .collect()
}

/// A date series: what it spans, its extremes, a sparkline, and a line chart.
fn line(name: &str, points: &[(NaiveDate, f64)], width: usize) -> String {
    let mut points = points.to_vec();
    points.sort_by_key(|p| p.0);
    let values: Vec<f64> = points.iter().map(|p| p.1).collect();
    let (first, last) = (points[0], points[points.len() - 1]);
    let min = points
        .iter()
        .copied()
        .fold(first, |m, p| if p.1 < m.1 { p } else { m });
    let max = points
        .iter()
        .copied()
        .fold(first, |m, p| if p.1 > m.1 { p } else { m });
    let mut out = format!(
        "{name}, {} to {} ({} points): first {:.2}, last {:.2}, lowest {:.2} on {}, highest {:.2} on {}\n",
        first.0,
        last.0,
        points.len(),
        first.1,
        last.1,
        min.1,
        min.0,
        max.1,
        max.0
    );
    out.push_str(&sparkline(&values, width.saturating_sub(2)));
    out.push('\n');
    if points.len() < 2 || first.0 == last.0 || min.1 == max.1 {
        return out;
    }
    // textplots works in f32: days since the first date keep full precision.
    let day = |d: NaiveDate| (d - first.0).num_days() as f32;
    let xy: Vec<(f32, f32)> = points.iter().map(|p| (day(p.0), p.1 as f32)).collect();
    let shape = Shape::Lines(&xy);
    // Braille: 2 dots a character across, 4 down; the y labels take about 12 characters.
    let columns = width.saturating_sub(14).max(16) as u32;
    let chart = &mut Chart::new(columns * 2, 48, 0.0, day(last.0));
    let start = first.0;
    let chart = chart
        .x_label_format(LabelFormat::Custom(Box::new(move |x| {
            (start + chrono::Days::new(x.max(0.0).round() as u64)).to_string()
        })))
        .y_label_format(LabelFormat::Custom(Box::new(|y| format!("{y:.2}"))))
        .lineplot(&shape);
    chart.axis();
    chart.figures();
    out.push_str(&chart.to_string());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_spans_the_levels_and_buckets() {
        assert_eq!(sparkline(&[0.0, 7.0, 3.5], 10), "▁█▅");
        assert_eq!(sparkline(&[2.0, 2.0], 10), "▄▄");
        // 8 values into 4 buckets: the averages of pairs.
        assert_eq!(
            sparkline(&[0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0], 4),
            "▁▃▆█"
        );
    }

    fn result(sql: &str) -> QueryResult {
        let conn = duckdb::Connection::open_in_memory().unwrap();
        finq_analytics::query::run(&conn, sql).unwrap()
    }

    #[test]
    fn picks_the_chart_by_the_first_column_and_says_what_it_needs() {
        let bars = chart(
            &result("SELECT 'a' AS k, 2 AS v UNION ALL SELECT 'b', 4"),
            60,
        )
        .unwrap();
        assert!(bars.starts_with("a  ") && bars.contains('█'), "{bars}");
        let line = chart(
            &result(
                "SELECT DATE '2026-01-01' + INTERVAL (i) DAY AS d, i * i AS v FROM range(30) t(i)",
            ),
            60,
        )
        .unwrap();
        assert!(
            line.starts_with("v, 2026-01-01 to 2026-01-30 (30 points): first 0.00, last 841.00"),
            "{line}"
        );
        assert!(line.contains('▁') && line.contains('█'), "{line}");
        assert!(line.lines().count() > 8, "a line chart follows:\n{line}");
        // A flat series: the sparkline alone.
        let flat = chart(
            &result("SELECT DATE '2026-01-01' + INTERVAL (i) DAY, 5 FROM range(3) t(i)"),
            60,
        )
        .unwrap();
        assert_eq!(flat.lines().count(), 2, "{flat}");
        for (sql, why) in [
            ("SELECT 1 AS a, 2 AS b, 3 AS c", "two columns"),
            ("SELECT 'a' AS k, 'b' AS v", "must be a number"),
            ("SELECT 'a' AS k, 1 AS v WHERE false", "no rows"),
        ] {
            let err = chart(&result(sql), 60).unwrap_err().to_string();
            assert!(err.contains(why), "{sql}: {err}");
        }
    }

    #[test]
    fn bars_scale_to_the_largest() {
        let out = bars(&[("Food".into(), 50.0), ("Rent".into(), -100.0)], 40);
        let lines: Vec<&str> = out.lines().collect();
        let full = lines[1].matches('▒').count();
        assert_eq!(lines[0].matches('█').count() * 2, full);
        assert!(lines[0].starts_with("Food  █") && lines[0].ends_with(" 50.00"));
        assert!(lines[1].ends_with(" -100.00"));
        assert!(lines.iter().all(|l| l.chars().count() <= 40));
    }
}
