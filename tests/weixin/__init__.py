"""Tests of weixin/, the production package."""
