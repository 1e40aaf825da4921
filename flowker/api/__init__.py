"""flowker.api"""
