"""Tests of the Vipps MobilePay emulator (plain unittest, standard library)."""
