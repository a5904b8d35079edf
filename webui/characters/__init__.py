"""Characters: the character model, its store, Tavern cards, Modelfiles, lorebooks."""
