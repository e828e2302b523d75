//! Web UI (issue "Web UI and call index").
