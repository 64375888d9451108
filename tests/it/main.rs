//! Integration tests: real sockets on 127.0.0.1, the library in-process and the built binary.

mod binary;
mod browser;
mod chaos;
mod chat;
mod cluster;
mod dump;
mod echo;
mod floods;
mod hardening;
mod history;
mod listeners;
mod metrics;
mod moderation;
mod proxy;
mod redis_server;
mod rooms;
mod send;
mod service;
mod shutdown;
mod support;
mod telnet_bytes;
mod telnet_program;
mod terminals;
mod tls;
mod transcript;
mod web;
