//! Autoscaling for weir: a scaling policy with the behaviour of Knative's KPA (stable and panic
//! windows, rate limits, scale to zero after a grace period) or the HPA's rule, run on an
//! explicit clock so the same code decides live and in simulation; signals from the replicas'
//! own metrics or from Prometheus; local `weir serve` replicas registered with the router.

pub mod chart;
pub mod config;
pub mod controller;
pub mod kubernetes;
pub mod local;
pub mod policy;
pub mod signal;
pub mod simulate;
