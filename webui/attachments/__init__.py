"""Files and images a user attaches to a message: checking, text extraction, image decoding.

Pure functions over bytes: nothing here reads outside the upload it is given, fetches a URL
unless told it may, or knows about chats, models or the web page.
"""
