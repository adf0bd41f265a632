//! Scenario functions shared by the request-sequence, simulator and real-API tests.
