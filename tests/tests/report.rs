//! `jeprof-rs report`: the interval dumps of a growing leak (`c/trend.c`, exact mode, heap and
//! mmap) become one HTML file that fetches nothing, and headless Chromium renders it: the
//! page's script ran (it marks `<html>` at load), no script failed (`window.onerror` records
//! into the DOM, the flame graphs' too), both flame graphs drew, and the leaking functions are
//! named with their growth: each chart line's values rise to the exact leaked bytes, and the
//! key marks the site growing.

use std::time::{Duration, Instant};

use jeprof_tests::*;

const STEPS: u64 = 30;
const STEP: u64 = 65536;

/// `name="value"` of the first tag that has it.
fn attr<'a>(html: &'a str, name: &str) -> Option<&'a str> {
    let at = html.find(&format!(" {name}=\""))? + name.len() + 3;
    html[at..].split('"').next()
}

/// The values of the chart line of `site` in the DOM (`data-bytes` after `data-site`).
fn series(dom: &str, site: &str) -> Vec<Vec<u64>> {
    dom.match_indices(&format!("data-site=\"{site}\""))
        .map(|(at, _)| {
            attr(&dom[at..], "data-bytes")
                .unwrap_or_else(|| panic!("no data-bytes after {site}"))
                .split(',')
                .map(|v| v.parse().unwrap())
                .collect()
        })
        .collect()
}

#[test]
fn chromium_renders_the_report_of_a_growing_leak() {
    let started = Instant::now();
    if !have_program("chromium") {
        skip(
            "chromium_renders_the_report_of_a_growing_leak",
            "`chromium` not installed (apt-get install chromium)",
        );
        return;
    }
    let dir = TempDir::new("report");
    let bin = compile_c("trend", dir.path(), &[]);
    let conf = format!("{},lg_prof_interval:20", exact_conf(&dir));
    let run = Run::new(&bin).arg(STEPS.to_string()).profiled(&conf).run();
    run.expect_success();
    let dumps = dumps_in(dir.path(), "jeprof");
    let heaps = dumps.iter().filter(|d| !d.mmap).count();
    assert!(heaps >= 4, "{heaps} heap dumps");
    let html_path = dir.path().join("report.html");
    let mut args = vec![
        "report".to_string(),
        "-o".to_string(),
        html_path.display().to_string(),
    ];
    args.extend(dumps.iter().map(|d| d.path.display().to_string()));
    let out = Run::new(analyzer()).args(&args).run();
    out.expect_success();
    assert!(out.stdout.contains("2 series"), "{}", out.report());

    // Self-contained: nothing to fetch.
    let html = std::fs::read_to_string(&html_path).unwrap();
    let lower = html.to_ascii_lowercase();
    for bad in [
        "src=\"http",
        "src='http",
        "href=\"http",
        "href='http",
        "<link",
        "url(http",
        "url(//",
        "@import",
        "<script src",
        "<img",
    ] {
        assert!(!lower.contains(bad), "report.html has {bad:?}");
    }
    assert!(lower.contains("content-security-policy"), "no CSP");

    // Rendered by a real browser.
    let profile = dir.path().join("chromium-profile");
    let render = Run::new("chromium")
        .args(&[
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-extensions",
            &format!("--user-data-dir={}", profile.display()),
            "--dump-dom",
            &format!("file://{}", html_path.display()),
        ])
        .env("HOME", &dir.path().display().to_string())
        .timeout(Duration::from_secs(60))
        .run();
    render.expect_success();
    let dom = &render.stdout;
    let root = dom
        .find("<html")
        .map(|at| &dom[at..at + dom[at..].find('>').unwrap()])
        .unwrap_or_else(|| panic!("no <html> in the DOM\n{}", render.report()));
    assert_eq!(
        attr(root, "data-rendered"),
        Some("yes"),
        "the page script ran: {root}\n{}",
        render.report()
    );
    assert_eq!(attr(root, "data-script-errors"), None, "{root}");
    assert_eq!(
        attr(root, "data-flames-drawn"),
        Some("2"),
        "heap and mmap flame graphs: {root}"
    );

    // The leaks, by name, with their growth: a line in each chart rising to the exact bytes.
    for (site, kind) in [("leak_step", "heap"), ("map_leak", "mmap")] {
        let lines = series(dom, site);
        assert_eq!(lines.len(), 1, "{site}: one chart line ({kind})");
        let values = &lines[0];
        assert_eq!(values.len(), heaps, "{site}: {values:?}");
        let rises = values.windows(2).filter(|w| w[1] > w[0]).count();
        assert!(
            values.windows(2).all(|w| w[1] >= w[0]) && 3 * rises >= 2 * (values.len() - 1),
            "{site} never falls and rises in 2/3 of the intervals: {values:?}"
        );
        assert_eq!(*values.last().unwrap(), STEPS * STEP, "{site}: {values:?}");
        let key = dom
            .split("<tr>")
            .find(|row| {
                row.contains(&format!("<span class=\"fn\">{site}</span>"))
                    && row.contains("class=\"swatch\"")
            })
            .unwrap_or_else(|| panic!("{site} not in a chart's key"));
        assert!(key.contains("class=\"growing\""), "{site}: {key}");
        assert!(key.contains('+'), "{site}: growth shown: {key}");
    }
    assert!(
        dom.contains("Leading sites") && dom.contains("leak_step [trend] &lt;- main"),
        "the leading line"
    );
    assert!(dom.contains("explained"), "the RSS table");
    assert!(dom.contains("Top sites"), "the top table");
    eprintln!("report test took {:?}", started.elapsed());
}
