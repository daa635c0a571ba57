//! End-to-end tests: the real application on a real PostgreSQL, with a simulated
//! amoCRM at the HTTP boundary (the simulator of crates/amocrm-sim).

mod admin;
mod admin_actions;
mod browser;
mod cdp;
mod config;
mod delivery;
mod delivery_faults;
mod delivery_rounds;
mod disable;
mod helpers;
mod hooks;
mod install;
mod install_limits;
mod install_more;
mod isolation;
mod isolation_more;
mod keys;
mod languages;
mod lifecycle;
mod platforms;
mod real_bodies;
mod real_bodies_more;
mod sandbox;
mod settings;
mod subscriptions;
mod tenant;
mod tenant_browser;
mod tokens;
