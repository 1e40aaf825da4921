"""flowker.validation"""
