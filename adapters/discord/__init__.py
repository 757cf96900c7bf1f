"""Folio on Discord (discord.py 2.x). Importing this package does not import discord.py.

from adapters.discord.adapter import DiscordAdapter
from adapters.discord.settings import DiscordSettings
"""
