"""Sensitive content both packages handle: personal data, canary secrets, group terms."""
