"""Values shared by every test module and fixture plugin."""

API_KEY = "tt-test-key-0123456789abcdefghijklmnop"
