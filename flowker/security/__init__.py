"""flowker.security"""
