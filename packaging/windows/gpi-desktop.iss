; Inno Setup 6 script for the Windows installer of GPI Desktop.
; Built by packaging\windows\build_windows.ps1, which first makes the
; PyInstaller one-folder app in dist\gpi-desktop\ and build\gpi-desktop.ico:
;   ISCC.exe /DAppVersion=0.1.0 /DSourceRoot=C:\path\to\checkout packaging\windows\gpi-desktop.iss
; Add /DDiskSpanning for a CUDA build: its 3-4 GB no longer fit in one setup.exe.

#ifndef AppVersion
  #error Pass the version: ISCC /DAppVersion=X.Y.Z
#endif
#ifndef SourceRoot
  #define SourceRoot "..\.."
#endif
#define AppName "GPI Desktop"
#define AppExe "gpi-desktop.exe"

[Setup]
; The AppId identifies the program to Windows' uninstaller; never change it.
AppId={{8F3C2A4E-6B1D-4E7A-9C55-3D2B7A1E9F10}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=GPI Desktop project
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
OutputDir={#SourceRoot}\dist
OutputBaseFilename=gpi-desktop-{#AppVersion}-windows-setup
SetupIconFile={#SourceRoot}\build\gpi-desktop.ico
UninstallDisplayIcon={app}\{#AppExe}
UninstallDisplayName={#AppName}
Compression=lzma2/max
SolidCompression=yes
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
; Lab IT installs for all users (the default, needs admin); a researcher
; without admin rights can choose "only for me" (or /CURRENTUSER when silent).
PrivilegesRequired=admin
PrivilegesRequiredOverridesAllowed=dialog commandline
WizardStyle=modern
MinVersion=10.0
#ifdef DiskSpanning
DiskSpanning=yes
#endif

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "{#SourceRoot}\dist\gpi-desktop\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\{#AppExe}"; IconFilename: "{app}\{#AppExe}"; Comment: "Texts and hidden states for GenAI-Powered Inference"
Name: "{group}\Uninstall {#AppName}"; Filename: "{uninstallexe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; Tasks: desktopicon

[Run]
Filename: "{app}\{#AppExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

[UninstallDelete]
; The program writes nothing into its folder (settings, logs and caches live in
; the user's profile), so the folder is removed only if it is empty: a folder a
; user pointed the installer at is never wiped.
Type: dirifempty; Name: "{app}"
