"""Tools the model may call from the Chat tab: Python tool files in the user-data folder (a few are
shipped) and the tools of MCP servers, behind one :class:`~webui.tools.toolbox.ToolBox` that checks
arguments, bounds results and times out; the chat service runs the calls the user approved."""
