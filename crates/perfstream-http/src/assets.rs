//! The dashboard page and the charting library, embedded in the binary: the page works
//! offline and nothing is fetched at run time. uPlot is vendored once from npm
//! (`assets/uplot/README.md`).

use axum::http::header;
use axum::response::{Html, IntoResponse};

static DASHBOARD: &str = include_str!("../assets/dashboard.html");
static UPLOT_JS: &str = include_str!("../assets/uplot/uPlot.iife.min.js");
static UPLOT_CSS: &str = include_str!("../assets/uplot/uPlot.min.css");
/// The vendored files change only with the binary: a day of caching saves a reload 52 kB.
const CACHE_CONTROL: &str = "public, max-age=86400";

pub async fn dashboard() -> Html<&'static str> {
    Html(DASHBOARD)
}

pub async fn uplot_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE_CONTROL),
        ],
        UPLOT_JS,
    )
}

pub async fn uplot_css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE_CONTROL),
        ],
        UPLOT_CSS,
    )
}
