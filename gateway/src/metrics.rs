//! Prometheus metrics, served on their own listener (`server.metrics_listen`).

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

/// The gateway's metrics, in a registry of their own (no global state).
#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// `gatehouse_requests_total{app,status}`; `app` is `-` for requests that matched none.
    pub requests: IntCounterVec,
    /// `gatehouse_upstream_duration_seconds{app}`: from sending upstream to the response header.
    pub upstream_latency: HistogramVec,
    /// `gatehouse_upstream_healthy{app,upstream}`: 1 healthy, 0 not.
    pub upstream_healthy: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("gatehouse_requests_total", "Requests answered, by app and status"),
            &["app", "status"],
        )?;
        let upstream_latency = HistogramVec::new(
            HistogramOpts::new(
                "gatehouse_upstream_duration_seconds",
                "Time from sending a request upstream to its response header",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["app"],
        )?;
        let upstream_healthy = IntGaugeVec::new(
            Opts::new("gatehouse_upstream_healthy", "Whether an upstream passes health checks"),
            &["app", "upstream"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(upstream_latency.clone()))?;
        registry.register(Box::new(upstream_healthy.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            upstream_latency,
            upstream_healthy,
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }
}

/// The `/metrics` endpoint as a pingora app.
#[derive(Debug)]
pub struct MetricsApp(pub Metrics);

#[async_trait]
impl ServeHttp for MetricsApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path();
        let (status, ctype, body) = if path == "/metrics" {
            (200, "text/plain; version=0.0.4", self.0.render())
        } else {
            (404, "text/plain", b"metrics are at /metrics\n".to_vec())
        };
        Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, ctype)
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(body)
            .unwrap_or_default()
    }
}
