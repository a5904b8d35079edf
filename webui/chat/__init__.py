"""Chats: prompt building per mode, whole-turn truncation, the chat service, history on disk."""
