//! amohook: an amoCRM (Kommo) public integration that writes a note into a
//! card whenever a lead, contact or company is added or changed, for many
//! accounts at once.

pub mod account_settings;
pub mod accounts;
pub mod amocrm;
pub mod backoff;
pub mod config;
pub mod crypto;
pub mod db;
pub mod delivery;
pub mod fault;
pub mod hooks_in_flight;
pub mod http;
pub mod inbox;
pub mod install;
pub mod key_check;
pub mod listen;
pub mod notes;
pub mod platform;
pub mod reencrypt;
pub mod retention;
pub mod sandbox;
pub mod startup;
pub mod stats;
pub mod telemetry;
pub mod tenant;
pub mod tokens;
pub mod uninstall;
pub mod widget;
