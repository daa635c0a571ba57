//! amohook: an amoCRM (Kommo) public integration that writes a note into a
//! card whenever a lead, contact or company is added or changed, for many
//! accounts at once.

pub mod accounts;
pub mod amocrm;
pub mod config;
pub mod crypto;
pub mod db;
pub mod fake_amocrm;
pub mod http;
pub mod install;
pub mod startup;
pub mod telemetry;
pub mod tokens;
