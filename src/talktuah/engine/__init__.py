"""The inference engine TalkTuah supervises: one driver a module, one supervisor over them."""
