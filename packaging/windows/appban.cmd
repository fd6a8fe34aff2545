@echo off
rem appban for administrators: appban check, appban status, ... (the service runs appban run)
"%SystemRoot%\py.exe" -3.11 -I "%~dp0appban.py" %*
