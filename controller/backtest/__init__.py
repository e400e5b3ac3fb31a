"""Backtesting: replay recorded or historical signals through the same decision core."""
