//! # Chapter 6: replication
//!
//! (Work in progress: the chapter's docs are written with its modules.)

pub mod client;
pub mod controller;
pub mod controller_service;
pub mod disk;
pub mod epoch;
pub mod manager;
pub mod memory;
pub mod protocol;
pub mod replica;
pub mod service;
pub mod sim;
pub mod storage;
