"""ue_emulator package."""
